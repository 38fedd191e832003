//! Machinery shared by the three simulators: the in-process server, call
//! recording, fault injection, fixed-window and token-bucket rate limiting,
//! the record of calls that arrived inside an announced rate-limit window,
//! and the control trait [`ChatSim`].
//!
//! Faults come in two phases: before the API runs (the call is refused and
//! nothing changes) and after it applied the call (the change stays, but the
//! client gets a 5xx or a reset connection instead of the answer), the
//! second being the case a client must not turn into a duplicate.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, oneshot, watch};

use super::conn::{ConnReset, ResettableListener};

/// Largest request body the simulators read; larger bodies get 413.
const MAX_REQUEST_BODY: usize = 8 * 1024 * 1024;

/// Status recorded for a call whose client went away before the response was
/// produced (nginx's convention for "client closed request").
pub const STATUS_CLIENT_CLOSED: u16 = 499;

/// Status recorded for a call whose connection the simulator reset without
/// answering (nginx's convention for "closed without a response").
pub const STATUS_NO_RESPONSE: u16 = 444;

/// A chat user known to a simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUser {
    pub id: String,
    /// Slack `name`, Discord `username`, Mattermost `username`.
    pub name: String,
    pub email: String,
}

impl SimUser {
    pub fn new(id: impl Into<String>, name: impl Into<String>, email: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            email: email.into(),
        }
    }
}

/// A channel known to a simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimChannel {
    pub id: String,
    pub name: String,
    /// Mattermost team name (or Discord guild id); unused by Slack.
    pub team: Option<String>,
    /// Whether the bot may post (and read) there.
    pub bot_is_member: bool,
}

impl SimChannel {
    /// A channel the bot is a member of.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            team: None,
            bot_is_member: true,
        }
    }

    pub fn in_team(mut self, team: impl Into<String>) -> Self {
        self.team = Some(team.into());
        self
    }

    /// The bot is not a member of this channel.
    pub fn without_bot(mut self) -> Self {
        self.bot_is_member = false;
        self
    }
}

/// One HTTP call as the simulator saw it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// Increases by one per request, in order of arrival.
    pub seq: u64,
    pub method: Method,
    /// Path as received, e.g. `/api/chat.postMessage`.
    pub path: String,
    pub query: Option<String>,
    /// Stable name of the endpoint: the Slack method name, or
    /// `"<METHOD> <path template>"` for Discord and Mattermost.
    pub endpoint: String,
    /// The request body: parsed JSON, a form as an object of strings, a
    /// string for anything else, `Null` when empty. Tokens are redacted.
    pub body: Value,
    /// HTTP status returned; [`STATUS_CLIENT_CLOSED`] when the client gave up first.
    pub status: u16,
    /// The response body, parsed like `body`.
    pub response: Value,
    pub received_at: Instant,
    /// Time from receipt to response, including injected delays.
    pub service_time: Duration,
    /// Set when the API applied the call and an injected fault replaced its
    /// answer (then `status` and `response` are what the client got: the
    /// injected 5xx, or [`STATUS_NO_RESPONSE`] and `Null` for a reset).
    pub applied: Option<Applied>,
}

/// The API's own answer to a call it applied before an injected fault
/// replaced that answer.
#[derive(Debug, Clone)]
pub struct Applied {
    pub status: u16,
    pub response: Value,
}

/// A call that arrived while a rate-limit window announced for its bucket
/// (by a 429 and its `Retry-After`) was still open.
#[derive(Debug, Clone)]
pub struct WindowCall {
    pub seq: u64,
    pub endpoint: String,
    /// The simulator's bucket, e.g. `chat.postMessage C0123` or `chat.update`.
    pub bucket: String,
    pub announced_at: Instant,
    /// End of the announced window (announcement + `Retry-After`).
    pub until: Instant,
    pub arrived_at: Instant,
}

impl WindowCall {
    /// Time between the 429 that announced the window and this call's
    /// arrival. A call that arrives within a round trip of the announcement
    /// was in flight before its client could have read it.
    pub fn lag(&self) -> Duration {
        self.arrived_at.saturating_duration_since(self.announced_at)
    }
}

/// A rate-limit window as a 429 announced it.
#[derive(Debug, Clone)]
pub struct AnnouncedWindow {
    pub bucket: String,
    pub announced_at: Instant,
    pub until: Instant,
}

/// Rate-limit windows announced per bucket, and the calls that ignored them.
#[derive(Debug, Default)]
struct Announced {
    /// Bucket → (announced at, open until); only the latest-ending window.
    open: HashMap<String, (Instant, Instant)>,
    inside: Vec<WindowCall>,
    history: Vec<AnnouncedWindow>,
}

impl Announced {
    fn arrival(&mut self, seq: u64, endpoint: &str, bucket: &str, at: Instant) {
        if let Some((announced_at, until)) = self.open.get(bucket).copied()
            && announced_at <= at
            && at < until
        {
            self.inside.push(WindowCall {
                seq,
                endpoint: endpoint.to_owned(),
                bucket: bucket.to_owned(),
                announced_at,
                until,
                arrived_at: at,
            });
        }
    }

    fn announce(&mut self, bucket: &str, at: Instant, retry_after: Duration) {
        let until = at + retry_after;
        self.history.push(AnnouncedWindow {
            bucket: bucket.to_owned(),
            announced_at: at,
            until,
        });
        let e = self.open.entry(bucket.to_owned()).or_insert((at, until));
        if until >= e.1 {
            *e = (at, until);
        }
    }
}

/// A fixed-window rate limit: at most `limit` calls per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    pub limit: u32,
    pub window: Duration,
}

impl RateWindow {
    pub const fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window }
    }

    pub const fn per_minute(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(60))
    }
}

/// Returned when [`ChatSim::wait_until`] runs out of time.
#[derive(Debug, thiserror::Error)]
#[error("condition not met within {0:?}")]
pub struct WaitTimeout(pub Duration);

/// Lock a mutex, ignoring poisoning: simulator state stays usable even if a
/// test panicked while holding a guard.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the three APIs do differently in the shared layer.
pub(crate) trait Flavor: Send + Sync + 'static {
    fn endpoint(&self, method: &Method, path: &str) -> String;
    /// Body of an injected failure with `status`.
    fn failure(&self, status: StatusCode) -> Response;
    /// Response of an injected rate limit.
    fn rate_limited(&self, retry_after: Duration) -> Response;
    /// Whether an answer means the API applied the call; only such calls take
    /// an after-apply fault. Default: a 2xx status.
    fn applied(&self, status: StatusCode, _body: &[u8]) -> bool {
        status.is_success()
    }
    /// Rate-limit bucket of a call, as the API counts it, for the record of
    /// calls made inside announced windows; `None`: not tracked.
    fn bucket(&self, _endpoint: &str, _query: Option<&str>, _body: &ParsedBody) -> Option<String> {
        None
    }
}

#[derive(Debug, Clone)]
enum FaultKind {
    Status(StatusCode),
    RateLimited(Duration),
    /// The API applies the call; the client gets this status instead.
    StatusAfterApply(StatusCode),
    /// The API applies the call; the connection is reset unanswered.
    ResetAfterApply,
}

impl FaultKind {
    fn after_apply(&self) -> bool {
        matches!(self, Self::StatusAfterApply(_) | Self::ResetAfterApply)
    }
}

#[derive(Debug)]
struct Fault {
    kind: FaultKind,
    remaining: u32,
    path_contains: Option<String>,
}

#[derive(Debug, Default)]
struct FaultState {
    queue: Vec<Fault>,
    delay_before: Duration,
    delay_after: Duration,
}

impl FaultState {
    /// The next fault for a call of the phase asked for: before the API runs
    /// (`after_apply` false) or once it has applied the call. A fault's part
    /// matches the path or the endpoint name (`PATCH /channels/{channel_id}`
    /// tells an edit from a post on the same path).
    fn take(&mut self, path: &str, endpoint: &str, after_apply: bool) -> Option<FaultKind> {
        let idx = self.queue.iter().position(|f| {
            f.remaining > 0
                && f.kind.after_apply() == after_apply
                && f.path_contains.as_deref().is_none_or(|p| path.contains(p) || endpoint.contains(p))
        })?;
        let fault = &mut self.queue[idx];
        fault.remaining -= 1;
        let kind = fault.kind.clone();
        if fault.remaining == 0 {
            self.queue.remove(idx);
        }
        Some(kind)
    }
}

/// Recording and fault-injection state of one simulator.
pub struct SimCore {
    flavor: Box<dyn Flavor>,
    next_seq: AtomicU64,
    calls: Mutex<Vec<CallRecord>>,
    /// Bumped after every recorded call; waiters watch it.
    version: watch::Sender<u64>,
    events: broadcast::Sender<CallRecord>,
    faults: Mutex<FaultState>,
    announced: Mutex<Announced>,
}

impl SimCore {
    pub(crate) fn new(flavor: impl Flavor) -> Arc<Self> {
        Arc::new(Self {
            flavor: Box::new(flavor),
            next_seq: AtomicU64::new(1),
            calls: Mutex::new(Vec::new()),
            version: watch::Sender::new(0),
            events: broadcast::Sender::new(65_536),
            faults: Mutex::new(FaultState::default()),
            announced: Mutex::new(Announced::default()),
        })
    }

    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.calls).clone()
    }

    pub fn clear_calls(&self) {
        lock(&self.calls).clear();
        let mut a = lock(&self.announced);
        a.inside.clear();
        a.history.clear();
    }

    /// Calls that arrived inside a window announced for their bucket.
    pub fn calls_inside_windows(&self) -> Vec<WindowCall> {
        lock(&self.announced).inside.clone()
    }

    /// Every window a 429 announced, in order.
    pub fn windows_announced(&self) -> Vec<AnnouncedWindow> {
        lock(&self.announced).history.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CallRecord> {
        self.events.subscribe()
    }

    fn push_fault(&self, kind: FaultKind, n: u32, path_contains: Option<&str>) {
        if n == 0 {
            return;
        }
        lock(&self.faults).queue.push(Fault {
            kind,
            remaining: n,
            path_contains: path_contains.map(str::to_owned),
        });
    }

    /// # Panics
    /// If `status` is not a valid HTTP status code (a bug in the test).
    pub fn fail_next(&self, n: u32, status: u16, path_contains: Option<&str>) {
        let status = StatusCode::from_u16(status)
            .unwrap_or_else(|_| panic!("fail_next: {status} is not an HTTP status code"));
        self.push_fault(FaultKind::Status(status), n, path_contains);
    }

    pub fn rate_limit_next(&self, n: u32, retry_after: Duration, path_contains: Option<&str>) {
        self.push_fault(FaultKind::RateLimited(retry_after), n, path_contains);
    }

    /// The next `n` writes (not GET or HEAD) the API applies (a 2xx, for
    /// Slack `"ok": true`) whose path or endpoint name contains
    /// `path_contains` are answered with `status` and the API's failure body instead; the
    /// change stays. Calls the API refuses do not use the fault up.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code (a bug in the test).
    pub fn fail_after_apply_next(&self, n: u32, status: u16, path_contains: Option<&str>) {
        let status = StatusCode::from_u16(status)
            .unwrap_or_else(|_| panic!("fail_after_apply_next: {status} is not an HTTP status code"));
        self.push_fault(FaultKind::StatusAfterApply(status), n, path_contains);
    }

    /// Like [`fail_after_apply_next`](Self::fail_after_apply_next), but the
    /// connection is reset instead of answered: the client sees a transport
    /// error after its request was applied.
    pub fn reset_after_apply_next(&self, n: u32, path_contains: Option<&str>) {
        self.push_fault(FaultKind::ResetAfterApply, n, path_contains);
    }

    /// Calls an after-apply fault answered (applied, then 5xx or reset).
    pub fn applied_then_faulted(&self) -> Vec<CallRecord> {
        lock(&self.calls).iter().filter(|c| c.applied.is_some()).cloned().collect()
    }

    pub fn clear_faults(&self) {
        let mut f = lock(&self.faults);
        f.queue.clear();
        f.delay_before = Duration::ZERO;
        f.delay_after = Duration::ZERO;
    }

    pub fn set_delay(&self, delay: Duration) {
        lock(&self.faults).delay_before = delay;
    }

    pub fn set_response_delay(&self, delay: Duration) {
        lock(&self.faults).delay_after = delay;
    }

    /// Wait until `pred` holds, re-checking after every recorded call.
    pub async fn wait(
        &self,
        mut pred: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        let mut rx = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if pred() {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`; treat its loss like a timeout.
                Ok(Err(_)) | Err(_) => {
                    return if pred() {
                        Ok(())
                    } else {
                        Err(WaitTimeout(timeout))
                    };
                }
            }
        }
    }

    fn record(&self, rec: CallRecord) {
        {
            let mut calls = lock(&self.calls);
            // Keep arrival order even when a later request finishes first.
            let pos = calls.partition_point(|c| c.seq < rec.seq);
            calls.insert(pos, rec.clone());
        }
        let _ = self.events.send(rec);
        self.version.send_modify(|v| *v += 1);
    }
}

/// Request body as read by the recording layer and handed to handlers.
#[derive(Debug, Clone)]
pub(crate) enum ParsedBody {
    Empty,
    Json(Value),
    /// `application/json` that does not parse.
    InvalidJson,
    Form(Vec<(String, String)>),
    /// Any other (or missing) content type.
    Other(Bytes),
}

impl ParsedBody {
    fn parse(headers: &HeaderMap, bytes: &Bytes) -> Self {
        if bytes.is_empty() {
            return Self::Empty;
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        match content_type.as_str() {
            "application/json" => match serde_json::from_slice(bytes) {
                Ok(v) => Self::Json(v),
                Err(_) => Self::InvalidJson,
            },
            "application/x-www-form-urlencoded" => Self::Form(
                form_urlencoded::parse(bytes)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            ),
            _ => Self::Other(bytes.clone()),
        }
    }

    /// The body as JSON regardless of the declared content type (Mattermost
    /// behaviour); `None` when empty or not JSON.
    pub(crate) fn lenient_json(&self) -> Option<Value> {
        match self {
            Self::Json(v) => Some(v.clone()),
            Self::Other(b) => serde_json::from_slice(b).ok(),
            Self::Form(_) | Self::Empty | Self::InvalidJson => None,
        }
    }

    fn to_record(&self, raw: &Bytes) -> Value {
        let mut v = match self {
            Self::Empty => Value::Null,
            Self::Json(v) => v.clone(),
            Self::Form(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
            Self::InvalidJson | Self::Other(_) => {
                serde_json::from_slice(raw).unwrap_or_else(|_| lossy(raw))
            }
        };
        redact(&mut v);
        v
    }
}

fn lossy(raw: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(raw).into_owned())
}

/// Tokens never reach the call log.
fn redact(v: &mut Value) {
    if let Value::Object(map) = v
        && let Some(t) = map.get_mut("token")
    {
        *t = Value::String("[redacted]".into());
    }
}

/// Records the call in progress; if the request future is dropped (client
/// disconnected) the call is still recorded, with [`STATUS_CLIENT_CLOSED`].
struct PendingCall {
    core: Arc<SimCore>,
    record: Option<CallRecord>,
}

impl PendingCall {
    fn finish(self, status: u16, response: Value) {
        self.finish_faulted(status, response, None);
    }

    fn finish_faulted(mut self, status: u16, response: Value, applied: Option<Applied>) {
        if let Some(mut rec) = self.record.take() {
            rec.status = status;
            rec.response = response;
            rec.applied = applied;
            rec.service_time = rec.received_at.elapsed();
            self.core.record(rec);
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if let Some(mut rec) = self.record.take() {
            rec.status = STATUS_CLIENT_CLOSED;
            rec.service_time = rec.received_at.elapsed();
            self.core.record(rec);
        }
    }
}

/// Outermost middleware: reads the body, records the call, applies injected
/// delays and faults, then runs the API.
pub(crate) async fn record_layer(
    State(core): State<Arc<SimCore>>,
    req: Request,
    next: Next,
) -> Response {
    let received_at = Instant::now();
    let seq = core.next_seq.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let conn = parts.extensions.get::<ConnectInfo<ConnReset>>().map(|c| c.0.clone());
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let endpoint = core.flavor.endpoint(&parts.method, &path);
    let pending = |body: Value| PendingCall {
        core: core.clone(),
        record: Some(CallRecord {
            seq,
            method: parts.method.clone(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_owned),
            endpoint: endpoint.clone(),
            body,
            status: 0,
            response: Value::Null,
            received_at,
            service_time: Duration::ZERO,
            applied: None,
        }),
    };
    let bytes = match to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let call = pending(Value::Null);
            call.finish(StatusCode::PAYLOAD_TOO_LARGE.as_u16(), Value::Null);
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
    };
    let parsed = ParsedBody::parse(&parts.headers, &bytes);
    let call = pending(parsed.to_record(&bytes));
    let bucket = core.flavor.bucket(&endpoint, parts.uri.query(), &parsed);
    if let Some(b) = &bucket {
        lock(&core.announced).arrival(seq, &endpoint, b, received_at);
    }

    let (delay_before, delay_after) = {
        let f = lock(&core.faults);
        (f.delay_before, f.delay_after)
    };
    if !delay_before.is_zero() {
        tokio::time::sleep(delay_before).await;
    }
    let fault = lock(&core.faults).take(&path, &endpoint, false);
    let refused = fault.is_some();
    let response = match fault {
        Some(FaultKind::Status(status)) => core.flavor.failure(status),
        Some(FaultKind::RateLimited(retry_after)) => core.flavor.rate_limited(retry_after),
        _ => {
            let mut req = Request::from_parts(parts, Body::from(bytes));
            req.extensions_mut().insert(parsed);
            next.run(req).await
        }
    };
    if !delay_after.is_zero() {
        tokio::time::sleep(delay_after).await;
    }

    let (parts, body) = response.into_parts();
    if parts.status == StatusCode::TOO_MANY_REQUESTS
        && let Some(b) = &bucket
        && let Some(secs) = parts
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    {
        lock(&core.announced).announce(b, Instant::now(), Duration::from_secs(secs));
    }
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let recorded = parsed_response(&body);
    // Reads change nothing, so only writes can be "applied, then failed";
    // the answer is judged only when such a fault is waiting.
    let after = if refused || method.is_safe() {
        None
    } else {
        let mut faults = lock(&core.faults);
        if faults.queue.iter().any(|f| f.kind.after_apply()) && core.flavor.applied(parts.status, &body) {
            faults.take(&path, &endpoint, true)
        } else {
            None
        }
    };
    let applied = |response| Some(Applied { status: parts.status.as_u16(), response });
    match after {
        Some(FaultKind::StatusAfterApply(status)) => {
            let (fparts, fbody) = core.flavor.failure(status).into_parts();
            let fbody = to_bytes(fbody, usize::MAX).await.unwrap_or_default();
            call.finish_faulted(fparts.status.as_u16(), parsed_response(&fbody), applied(recorded));
            Response::from_parts(fparts, Body::from(fbody))
        }
        Some(FaultKind::ResetAfterApply) => {
            // Recorded before the reset, so a test that sees the client's
            // error finds the call in the log.
            call.finish_faulted(STATUS_NO_RESPONSE, Value::Null, applied(recorded));
            match conn {
                Some(conn) => conn.reset(),
                None => tracing::warn!("chat simulator: no connection to reset; answering 502"),
            }
            // Never reaches the client: writing it fails on the reset socket.
            StatusCode::BAD_GATEWAY.into_response()
        }
        _ => {
            call.finish(parts.status.as_u16(), recorded);
            Response::from_parts(parts, Body::from(body))
        }
    }
}

/// A response body for the call log: JSON when it parses, else the text.
fn parsed_response(body: &[u8]) -> Value {
    if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).unwrap_or_else(|_| lossy(body))
    }
}

/// Keeps the server running; dropping it starts a graceful shutdown.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

impl ServerHandle {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Serve `app` on a random loopback port, wrapped in the recording layer.
pub(crate) async fn serve(app: Router, core: Arc<SimCore>) -> std::io::Result<ServerHandle> {
    let app = app.layer(axum::middleware::from_fn_with_state(core, record_layer));
    let listener = ResettableListener(tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?);
    let addr = listener.0.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        if let Err(err) = axum::serve(listener, app.into_make_service_with_connect_info::<ConnReset>())
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(%err, "chat simulator server stopped");
        }
    });
    Ok(ServerHandle {
        addr,
        _shutdown: tx,
    })
}

/// Accepted and revoked tokens of a simulator.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    active: HashSet<String>,
    revoked: HashSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    Valid,
    Unknown,
    Revoked,
}

impl Tokens {
    pub(crate) fn new(tokens: &[String]) -> Self {
        Self {
            active: tokens.iter().cloned().collect(),
            revoked: HashSet::new(),
        }
    }

    pub(crate) fn add(&mut self, token: &str) {
        self.revoked.remove(token);
        self.active.insert(token.to_owned());
    }

    pub(crate) fn revoke(&mut self, token: &str) {
        if self.active.remove(token) {
            self.revoked.insert(token.to_owned());
        }
    }

    pub(crate) fn check(&self, token: &str) -> TokenCheck {
        if self.active.contains(token) {
            TokenCheck::Valid
        } else if self.revoked.contains(token) {
            TokenCheck::Revoked
        } else {
            TokenCheck::Unknown
        }
    }
}

/// Outcome of counting one call against a [`RateWindow`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Time until the current window ends.
    pub reset_after: Duration,
}

/// Fixed-window counters keyed by bucket name. Rejected calls do not count.
#[derive(Debug, Default)]
pub(crate) struct FixedWindows {
    windows: HashMap<String, (Instant, u32)>,
}

impl FixedWindows {
    pub(crate) fn check(&mut self, key: &str, rule: RateWindow) -> Verdict {
        let now = Instant::now();
        let entry = self.windows.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= rule.window {
            *entry = (now, 0);
        }
        let reset_after = (entry.0 + rule.window).saturating_duration_since(now);
        let allowed = entry.1 < rule.limit;
        if allowed {
            entry.1 += 1;
        }
        Verdict {
            allowed,
            limit: rule.limit,
            remaining: rule.limit.saturating_sub(entry.1),
            reset_after,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.windows.clear();
    }
}

/// A token-bucket limit: `burst` calls at once, refilled at one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRule {
    pub burst: u32,
    pub interval: Duration,
}

impl TokenRule {
    pub fn new(burst: u32, interval: Duration) -> Self {
        Self { burst: burst.max(1), interval }
    }
}

/// Token buckets keyed by name. Rejected calls take no token.
#[derive(Debug, Default)]
pub(crate) struct TokenBuckets {
    buckets: HashMap<String, (f64, Instant)>,
}

impl TokenBuckets {
    /// `Ok` when a token was taken, else the time until the next one.
    pub(crate) fn take(&mut self, key: &str, rule: TokenRule) -> Result<(), Duration> {
        let now = Instant::now();
        let cap = f64::from(rule.burst);
        let per = rule.interval.as_secs_f64().max(1e-6);
        let e = self.buckets.entry(key.to_owned()).or_insert((cap, now));
        e.0 = (e.0 + now.duration_since(e.1).as_secs_f64() / per).min(cap);
        e.1 = now;
        if e.0 >= 1.0 {
            e.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - e.0) * per))
        }
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.clear();
    }
}

/// Whole seconds, rounded up, at least one: what `Retry-After` carries.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

pub(crate) fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn header_value(v: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&v.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The HTML error page a reverse proxy in front of the API would serve.
pub(crate) fn proxy_error_page(status: StatusCode, server: &str) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    let html = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// JSON response with a status.
pub(crate) fn json(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Query string pairs of a URI (later keys win).
pub(crate) fn query_map(query: Option<&str>) -> Map<String, Value> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

/// Count of Unicode scalar values, the unit the APIs measure lengths in.
pub(crate) fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Test-facing control surface common to the three simulators.
pub trait ChatSim: Clone + Send + Sync + 'static {
    #[doc(hidden)]
    fn core(&self) -> &SimCore;

    /// Base URL a client is configured with.
    fn base_url(&self) -> String;

    fn addr(&self) -> SocketAddr;

    /// Add (or re-add) a user at run time.
    fn add_user(&self, user: SimUser);

    /// Add or replace a channel at run time.
    fn add_channel(&self, channel: SimChannel);

    /// Make the bot join or leave `channel` (an id). Returns false if unknown.
    fn set_bot_member(&self, channel: &str, member: bool) -> bool;

    /// Accept `token` from now on.
    fn add_token(&self, token: &str);

    /// Reject `token` from now on, the way the API answers a revoked token.
    fn revoke_token(&self, token: &str);

    /// Every call so far, in arrival order.
    fn calls(&self) -> Vec<CallRecord> {
        self.core().calls()
    }

    /// Calls whose [`CallRecord::endpoint`] equals `endpoint`.
    fn calls_to(&self, endpoint: &str) -> Vec<CallRecord> {
        self.calls()
            .into_iter()
            .filter(|c| c.endpoint == endpoint)
            .collect()
    }

    fn clear_calls(&self) {
        self.core().clear_calls()
    }

    /// Calls that arrived while a rate-limit window announced for their
    /// bucket was open (tracked by Slack and Mattermost), in arrival order.
    fn calls_inside_windows(&self) -> Vec<WindowCall> {
        let mut v = self.core().calls_inside_windows();
        v.sort_by_key(|c| c.seq);
        v
    }

    /// Live feed of calls as they complete.
    fn subscribe(&self) -> broadcast::Receiver<CallRecord> {
        self.core().subscribe()
    }

    /// The next `n` calls fail with `status` and a body typical of the API.
    fn fail_next(&self, n: u32, status: u16) {
        self.core().fail_next(n, status, None)
    }

    /// Like [`fail_next`](Self::fail_next), only for calls whose path (or endpoint name) contains `path_part`.
    fn fail_next_on(&self, path_part: &str, n: u32, status: u16) {
        self.core().fail_next(n, status, Some(path_part))
    }

    /// The next `n` calls get the API's rate-limit answer with `retry_after`.
    fn rate_limit_next(&self, n: u32, retry_after: Duration) {
        self.core().rate_limit_next(n, retry_after, None)
    }

    fn rate_limit_next_on(&self, path_part: &str, n: u32, retry_after: Duration) {
        self.core().rate_limit_next(n, retry_after, Some(path_part))
    }

    /// The next `n` writes whose path (or endpoint name) contains `path_part` are applied, then
    /// answered with `status` (see [`SimCore::fail_after_apply_next`]).
    fn fail_after_apply_next_on(&self, path_part: &str, n: u32, status: u16) {
        self.core().fail_after_apply_next(n, status, Some(path_part))
    }

    /// The next `n` writes whose path (or endpoint name) contains `path_part` are applied, then
    /// their connection is reset unanswered (see [`SimCore::reset_after_apply_next`]).
    fn reset_after_apply_next_on(&self, path_part: &str, n: u32) {
        self.core().reset_after_apply_next(n, Some(path_part))
    }

    /// Calls the API applied whose answer an injected fault replaced.
    fn applied_then_faulted(&self) -> Vec<CallRecord> {
        self.core().applied_then_faulted()
    }

    /// Drop pending injected faults and delays.
    fn clear_faults(&self) {
        self.core().clear_faults()
    }

    /// Hold every request this long before handling it (a client that gives
    /// up meanwhile leaves no trace in the state).
    fn set_delay(&self, delay: Duration) {
        self.core().set_delay(delay)
    }

    /// Hold every response this long after handling (the action takes
    /// effect even if the client gives up).
    fn set_response_delay(&self, delay: Duration) {
        self.core().set_response_delay(delay)
    }

    /// Wait until `pred` holds; it is re-evaluated after every completed call.
    fn wait_until<F>(
        &self,
        mut pred: F,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), WaitTimeout>> + Send
    where
        F: FnMut(&Self) -> bool + Send,
    {
        async move { self.core().wait(|| pred(self), timeout).await }
    }

    /// Wait until at least `count` recorded calls satisfy `pred`; returns them.
    fn wait_for_calls<F>(
        &self,
        pred: F,
        count: usize,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<CallRecord>, WaitTimeout>> + Send
    where
        F: Fn(&CallRecord) -> bool + Send + Sync,
    {
        async move {
            let matching = || {
                self.calls()
                    .into_iter()
                    .filter(|c| pred(c))
                    .collect::<Vec<_>>()
            };
            self.core()
                .wait(|| matching().len() >= count, timeout)
                .await?;
            Ok(matching())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_window_counts_and_resets() {
        let mut w = FixedWindows::default();
        let rule = RateWindow::new(2, Duration::from_millis(40));
        assert!(w.check("a", rule).allowed);
        let second = w.check("a", rule);
        assert!(second.allowed);
        assert_eq!(second.remaining, 0);
        assert!(!w.check("a", rule).allowed);
        assert!(w.check("b", rule).allowed, "buckets are independent");
        std::thread::sleep(Duration::from_millis(45));
        assert!(w.check("a", rule).allowed);
    }

    #[test]
    fn token_bucket_allows_a_burst_then_one_per_interval() {
        let mut b = TokenBuckets::default();
        let rule = TokenRule::new(2, Duration::from_millis(50));
        assert!(b.take("a", rule).is_ok());
        assert!(b.take("a", rule).is_ok());
        let wait = b.take("a", rule).expect_err("burst used up");
        assert!(wait <= Duration::from_millis(50), "{wait:?}");
        assert!(b.take("b", rule).is_ok(), "buckets are independent");
        std::thread::sleep(Duration::from_millis(55));
        assert!(b.take("a", rule).is_ok());
        assert!(b.take("a", rule).is_err());
    }

    #[test]
    fn calls_inside_an_announced_window_are_recorded() {
        let mut a = Announced::default();
        let t0 = Instant::now();
        a.arrival(1, "chat.postMessage", "p C1", t0);
        a.announce("p C1", t0, Duration::from_secs(1));
        a.arrival(2, "chat.postMessage", "p C1", t0 + Duration::from_millis(300));
        a.arrival(3, "chat.postMessage", "p C2", t0 + Duration::from_millis(300));
        a.arrival(4, "chat.postMessage", "p C1", t0 + Duration::from_millis(1000));
        // A shorter, later announcement does not shorten the open window.
        a.announce("p C1", t0 + Duration::from_millis(100), Duration::ZERO);
        a.arrival(5, "chat.postMessage", "p C1", t0 + Duration::from_millis(500));
        let seqs: Vec<u64> = a.inside.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, vec![2, 5]);
        assert_eq!(a.inside[0].lag(), Duration::from_millis(300));
    }

    #[test]
    fn faults_match_path_and_run_out() {
        let mut f = FaultState::default();
        f.queue.push(Fault {
            kind: FaultKind::Status(StatusCode::BAD_GATEWAY),
            remaining: 1,
            path_contains: Some("postMessage".into()),
        });
        assert!(f.take("/api/auth.test", "auth.test", false).is_none());
        assert!(f.take("/api/chat.postMessage", "chat.postMessage", true).is_none(), "a fault before the API is not one after it");
        assert!(matches!(
            f.take("/api/chat.postMessage", "chat.postMessage", false),
            Some(FaultKind::Status(StatusCode::BAD_GATEWAY))
        ));
        assert!(f.take("/api/chat.postMessage", "chat.postMessage", false).is_none());
    }

    /// A one-route API for the after-apply faults: `POST /posts` appends to
    /// a list and answers 201, `POST /refuse` answers 400.
    struct Plain;

    impl Flavor for Plain {
        fn endpoint(&self, method: &Method, path: &str) -> String {
            format!("{method} {path}")
        }
        fn failure(&self, status: StatusCode) -> Response {
            json(status, serde_json::json!({"error": "injected"}))
        }
        fn rate_limited(&self, retry_after: Duration) -> Response {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, header_value(ceil_secs(retry_after)))]).into_response()
        }
    }

    async fn plain() -> (ServerHandle, Arc<SimCore>, Arc<Mutex<Vec<String>>>) {
        use axum::routing::post;
        let posts = Arc::new(Mutex::new(Vec::new()));
        let p = posts.clone();
        let app = Router::new()
            .route(
                "/posts",
                post(move |body: Bytes| async move {
                    lock(&p).push(String::from_utf8_lossy(&body).into_owned());
                    json(StatusCode::CREATED, serde_json::json!({"id": lock(&p).len()}))
                })
                .get(|| async { json(StatusCode::OK, serde_json::json!([])) }),
            )
            .route("/refuse", post(|| async { json(StatusCode::BAD_REQUEST, serde_json::json!({"error": "no"})) }));
        let core = SimCore::new(Plain);
        let server = serve(app, core.clone()).await.unwrap();
        (server, core, posts)
    }

    type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, String>;

    async fn call(client: &Client, addr: SocketAddr, path: &str) -> Result<(u16, Bytes), hyper_util::client::legacy::Error> {
        send(client, Method::POST, addr, path).await
    }

    async fn send(client: &Client, method: Method, addr: SocketAddr, path: &str) -> Result<(u16, Bytes), hyper_util::client::legacy::Error> {
        use http_body_util::BodyExt;
        let req = http::Request::builder().method(method).uri(format!("http://{addr}{path}")).body("hello".to_string()).unwrap();
        let resp = client.request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        Ok((status, body))
    }

    #[tokio::test]
    async fn after_apply_faults_keep_the_change_and_replace_the_answer() {
        let (server, core, posts) = plain().await;
        let client: Client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let addr = server.addr();

        // Applied, then 503: the post is stored, the client gets the failure.
        core.fail_after_apply_next(1, 503, Some("/posts"));
        let (status, body) = call(&client, addr, "/posts").await.unwrap();
        assert_eq!((status, &body[..]), (503, &br#"{"error":"injected"}"#[..]));
        assert_eq!(lock(&posts).len(), 1, "the call was applied");

        // A refused call and a read do not use up an after-apply fault; the
        // endpoint name matches too.
        core.reset_after_apply_next(1, Some("POST /"));
        assert_eq!(call(&client, addr, "/refuse").await.unwrap().0, 400);
        assert_eq!(send(&client, Method::GET, addr, "/posts").await.unwrap().0, 200);

        // Applied, then the connection is reset: no status at all.
        let err = call(&client, addr, "/posts").await.expect_err("the connection is reset unanswered");
        assert!(!err.is_connect(), "the request was sent: {err:?}");
        assert_eq!(lock(&posts).len(), 2, "the call was applied");

        // Faults used up: the next call (on a new connection) is answered.
        assert_eq!(call(&client, addr, "/posts").await.unwrap().0, 201);
        assert_eq!(lock(&posts).len(), 3);

        let calls = core.calls();
        let summary: Vec<(u16, Option<u16>)> = calls.iter().map(|c| (c.status, c.applied.as_ref().map(|a| a.status))).collect();
        assert_eq!(summary, vec![(503, Some(201)), (400, None), (200, None), (STATUS_NO_RESPONSE, Some(201)), (201, None)]);
        assert_eq!(calls[0].response["error"], "injected");
        assert_eq!(calls[3].response, Value::Null);
        assert_eq!(calls[3].applied.as_ref().unwrap().response["id"], 2, "the log keeps what was applied");
        assert_eq!(core.applied_then_faulted().len(), 2);
    }

    #[test]
    fn ceil_secs_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn form_token_is_redacted() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let raw = Bytes::from_static(b"token=xoxb-secret&channel=C1");
        let rec = ParsedBody::parse(&headers, &raw).to_record(&raw);
        assert_eq!(rec["token"], "[redacted]");
        assert_eq!(rec["channel"], "C1");
    }
}
