//! HTTP plumbing shared by the chat clients: one reqwest client per chat,
//! timeouts, a rate-limit gate (windows the API announced, one probe when a
//! window ends, pacing at the rate the API has shown; see [`super::gate`]),
//! and a bounded retry loop. Each chat supplies an [`Api`] that reads its
//! answers (error bodies, rate-limit headers); this module decides when to
//! wait, retry or give up.
//!
//! Tokens travel only in a sensitive `Authorization` header; error messages
//! and logs name the route (`chat.postMessage`, `POST /channels/{id}/messages`)
//! and never the URL, body or token.

use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::ChatError;
use super::gate::{Admit, Answer, Gate, Ticket};

/// Largest response body read; anything bigger is treated as a broken answer.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Rate-limit waits longer than this are treated as this long (a bogus header
/// must not park a client for days).
const MAX_RATE_WAIT: Duration = Duration::from_secs(3600);
/// Rate-limit answers tolerated inside one call (each waits as told).
const MAX_RATE_LIMITED: u32 = 16;
/// How long a replaceable call may wait for its turn (a slot that is due).
const REPLACEABLE_WAIT: Duration = Duration::from_millis(50);

/// Timeouts and retry bounds of a chat client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Whole request, from sending to the last byte of the answer.
    pub request_timeout: Duration,
    /// Attempts per call on server errors, timeouts and lost connections.
    pub max_attempts: u32,
    /// Time one call may spend in total, waits included; a rate limit that
    /// ends later is returned to the caller as `Transient { retry_after }`.
    pub call_budget: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How long recipient lookups (email → user, channel names) are cached.
    pub lookup_ttl: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            max_attempts: 4,
            call_budget: Duration::from_secs(30),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            lookup_ttl: Duration::from_secs(300),
        }
    }
}

/// Whether repeating a request can do harm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads, edits, reactions: repeating is harmless.
    Safe,
    /// Creates a message, but the API drops repeats (Discord nonce,
    /// Mattermost `pending_post_id`): retried, outcome tracked.
    Deduped,
    /// Creates a message and a repeat would post twice: never retried once
    /// an attempt may have been carried out; the caller looks it up first.
    Create,
}

/// What a 404 without a more specific error code means for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The message to edit or reply to is gone.
    Message,
    /// No such user.
    User,
    /// The channel (or team) does not exist or is invisible to the bot.
    Channel,
}

/// One API call.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Route template for logs, errors and rate-limit buckets.
    pub route: String,
    /// Path segments appended to the base URL (percent-encoded on use).
    pub segments: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    /// Discord's "major parameter" (channel id): part of its bucket key.
    pub major: String,
    /// What the call is about, for error messages (`channel C123`, an email).
    pub subject: String,
    pub idempotency: Idempotency,
    pub missing: Missing,
    /// A newer call will replace this one (a card edit): it does not wait
    /// for a rate-limit window inside the call but returns at once, so the
    /// engine can send the newest state when the window ends.
    pub replaceable: bool,
}

impl Request {
    pub fn new(method: Method, route: impl Into<String>, segments: &[&str]) -> Self {
        Self {
            method,
            route: route.into(),
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
            major: String::new(),
            subject: String::new(),
            idempotency: Idempotency::Safe,
            missing: Missing::Channel,
            replaceable: false,
        }
    }

    pub fn get(route: impl Into<String>, segments: &[&str]) -> Self {
        Self::new(Method::GET, route, segments)
    }

    pub fn post(route: impl Into<String>, segments: &[&str]) -> Self {
        Self::new(Method::POST, route, segments)
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    pub fn major(mut self, major: impl Into<String>) -> Self {
        self.major = major.into();
        self
    }

    pub fn idempotency(mut self, i: Idempotency) -> Self {
        self.idempotency = i;
        self
    }

    pub fn missing(mut self, m: Missing) -> Self {
        self.missing = m;
        self
    }

    pub fn replaceable(mut self) -> Self {
        self.replaceable = true;
        self
    }

    /// Whether an attempt that may have reached the server counts as
    /// "maybe carried out" for the caller.
    fn creates(&self) -> bool {
        self.idempotency != Idempotency::Safe
    }
}

/// An HTTP answer, read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`Null` when empty), `None` when it is not JSON.
    pub fn json(&self) -> Option<Value> {
        if self.body.is_empty() {
            return Some(Value::Null);
        }
        serde_json::from_slice(&self.body).ok()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    }

    /// A header holding seconds (integer or fractional).
    pub fn header_secs(&self, name: &str) -> Option<Duration> {
        self.header(name).and_then(parse_secs)
    }
}

/// Seconds as the APIs write them ("2", "0.357"); negative or absurd values
/// are clamped.
pub fn parse_secs(s: &str) -> Option<Duration> {
    let f: f64 = s.trim().parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    Some(Duration::from_secs_f64(
        f.clamp(0.0, MAX_RATE_WAIT.as_secs_f64()),
    ))
}

/// How the chat's [`Api`] reads an answer.
#[derive(Debug)]
pub enum Verdict {
    Done(Value),
    /// Rate limited: wait `after`; `global` means every route waits.
    Limited {
        after: Duration,
        global: bool,
    },
    /// Server trouble worth another attempt (5xx, gateway pages).
    Retry(String),
    Fail(ChatError),
}

/// What differs between the chat APIs.
pub trait Api: Send + Sync + 'static {
    /// Chat name for messages ("Slack").
    fn label(&self) -> &'static str;

    /// Rate-limit bucket of a request (checked before it is sent).
    fn bucket(&self, req: &Request) -> String {
        req.route.clone()
    }

    /// Learns rate-limit state from any answer (e.g. "0 calls left for 2 s").
    fn observe(&self, _req: &Request, _reply: &Reply, _gate: &RateGate) {}

    /// A failure known without asking: one the API gave moments ago that
    /// sending again would only repeat (Discord bans addresses that keep
    /// making requests it refuses). Checked before every attempt.
    fn refuse(&self, _req: &Request) -> Option<ChatError> {
        None
    }

    fn judge(&self, req: &Request, reply: &Reply) -> Verdict;
}

/// The rate-limit state of one client, shared by its concurrent calls (the
/// rules are in [`super::gate`]).
#[derive(Debug, Default)]
pub struct RateGate {
    state: Mutex<Gate>,
    /// Woken whenever a call is answered or gives its turn back.
    turn: Notify,
}

/// A call's turn in its bucket; given back when dropped unanswered.
pub struct Permit<'a> {
    gate: &'a RateGate,
    bucket: String,
    ticket: Option<Ticket>,
}

impl Permit<'_> {
    /// Records the answer (closing the bucket on a rate limit).
    pub fn finish(mut self, answer: Answer) {
        if let Some(t) = self.ticket.take() {
            self.gate.lock().finish(&self.bucket, &t, answer, Instant::now());
            self.gate.turn.notify_waiters();
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.gate.lock().cancel(&self.bucket, &t);
            self.gate.turn.notify_waiters();
        }
    }
}

/// Counts a caller as waiting in its bucket until dropped.
struct Waiting<'a> {
    gate: &'a RateGate,
    bucket: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.gate.lock().leave(self.bucket);
    }
}

/// A queued caller checks again at least this often (a lost wake-up must
/// not park it).
const QUEUE_RECHECK: Duration = Duration::from_millis(250);

impl RateGate {
    /// Keeps `bucket` closed for `wait` from now (never shortens a closure).
    pub fn close(&self, bucket: &str, wait: Duration) {
        self.lock().close(bucket, Instant::now() + wait.min(MAX_RATE_WAIT));
    }

    /// Closes every bucket for `wait` from now.
    pub fn close_all(&self, wait: Duration) {
        self.lock().close_all(Instant::now() + wait.min(MAX_RATE_WAIT));
    }

    /// How long a call to `bucket` has to wait for a closed window, if at all.
    pub fn wait_time(&self, bucket: &str) -> Option<Duration> {
        let now = Instant::now();
        self.lock().closed_until(bucket, now).map(|u| u - now)
    }

    /// Waits for a turn to call `bucket`, at the latest until `latest`;
    /// `Err(wait)` when no turn comes by then (how long to stay away).
    pub async fn enter(&self, bucket: &str, latest: Instant) -> Result<Permit<'_>, Duration> {
        self.lock().arrive(bucket, Instant::now())?;
        let _waiting = Waiting { gate: self, bucket };
        loop {
            let turn = self.turn.notified();
            tokio::pin!(turn);
            turn.as_mut().enable();
            let now = Instant::now();
            let admit = self.lock().admit(bucket, now, latest);
            match admit {
                Admit::Go(ticket) => {
                    let at = ticket.at;
                    let permit = Permit { gate: self, bucket: bucket.to_string(), ticket: Some(ticket) };
                    if at > now {
                        tokio::time::sleep_until(at).await;
                    }
                    // A window announced while we waited for the slot voids it.
                    if self.lock().closed_until(bucket, Instant::now()).is_none() {
                        return Ok(permit);
                    }
                }
                Admit::Wait { until } => {
                    if until > latest {
                        return Err(until - now);
                    }
                    tracing::debug!(bucket, wait_ms = (until - now).as_millis() as u64, "waiting for rate limit");
                    tokio::time::sleep_until(until).await;
                }
                Admit::Queue => {
                    if now >= latest {
                        return Err(self.lock().retry_hint(bucket, now));
                    }
                    let _ = tokio::time::timeout_at(latest.min(now + QUEUE_RECHECK), turn).await;
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A chat's HTTP client: base URL, credentials, gate and retry policy.
pub struct Http<A: Api> {
    client: reqwest::Client,
    base: Url,
    auth: HeaderValue,
    opts: ClientOptions,
    gate: RateGate,
    api: A,
    /// Counts the API's rate-limit answers; bound to the metrics at launch.
    rate_limited: std::sync::OnceLock<prometheus_client::metrics::counter::Counter>,
}

impl<A: Api> Http<A> {
    /// Counts every rate-limit answer (429) from now on in `counter`.
    pub fn count_rate_limits(&self, counter: prometheus_client::metrics::counter::Counter) {
        let _ = self.rate_limited.set(counter);
    }

    /// `authorization` is the full header value (`Bearer …`, `Bot …`).
    pub fn new(
        base_url: &str,
        authorization: &str,
        user_agent: &str,
        opts: ClientOptions,
        api: A,
    ) -> Result<Self, String> {
        let label = api.label();
        let mut base = Url::parse(base_url.trim())
            .map_err(|e| format!("{label} API URL {base_url:?} is not a valid URL: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(format!(
                "{label} API URL {base_url:?} must be an http(s) URL"
            ));
        }
        // Segments are appended below the base path, so it must end in '/'.
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let mut auth = HeaderValue::from_str(authorization).map_err(|_| {
            format!("the {label} token contains characters that cannot be sent in an HTTP header")
        })?;
        auth.set_sensitive(true);
        // The process installs ring at start; this makes a client built
        // elsewhere (tools, tests) work too instead of panicking.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Proxies come from HTTPS_PROXY / HTTP_PROXY / NO_PROXY (reqwest's default).
        let client = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .user_agent(user_agent)
            .build()
            .map_err(|e| format!("cannot build the {label} HTTP client: {e}"))?;
        Ok(Self {
            client,
            base,
            auth,
            opts,
            gate: RateGate::default(),
            api,
            rate_limited: std::sync::OnceLock::new(),
        })
    }

    pub fn api(&self) -> &A {
        &self.api
    }

    pub fn gate(&self) -> &RateGate {
        &self.gate
    }

    /// Runs one call: waits for the gate, retries within the bounds of
    /// [`ClientOptions`], and returns the answer's JSON.
    pub async fn call(&self, req: Request) -> Result<Value, ChatError> {
        let label = self.api.label();
        let deadline = Instant::now() + self.opts.call_budget;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.opts.min_backoff)
            .with_max_delay(self.opts.max_backoff)
            .with_jitter()
            .without_max_times()
            .build();
        let mut maybe_applied = false;
        let mut failures = 0u32;
        let mut limited = 0u32;
        loop {
            if let Some(e) = self.api.refuse(&req) {
                return Err(with_applied(e, maybe_applied));
            }
            let bucket = self.api.bucket(&req);
            // A replaceable call waits only for a turn that is (nearly) due.
            let latest = if req.replaceable { Instant::now() + REPLACEABLE_WAIT } else { deadline };
            let permit = match self.gate.enter(&bucket, latest).await {
                Ok(p) => p,
                Err(wait) => {
                    let e = ChatError::rate_limited(
                        format!("{label} rate limit: {} must wait another {}", req.route, secs(wait)),
                        wait,
                    );
                    return Err(with_applied(e, maybe_applied));
                }
            };

            let started = Instant::now();
            let result = self.send(&req).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let (err, rate_wait) = match result {
                Ok(reply) => {
                    tracing::debug!(chat = label, method = %req.method, route = %req.route, status = reply.status.as_u16(), elapsed_ms, "chat API call");
                    self.api.observe(&req, &reply, &self.gate);
                    match self.api.judge(&req, &reply) {
                        Verdict::Done(v) => {
                            permit.finish(Answer::Accepted);
                            return Ok(v);
                        }
                        Verdict::Fail(e) => {
                            permit.finish(Answer::Accepted);
                            return Err(with_applied(e, maybe_applied));
                        }
                        Verdict::Limited { after, global } => {
                            let after = after.min(MAX_RATE_WAIT);
                            if global {
                                self.gate.close_all(after);
                                permit.finish(Answer::Unknown);
                            } else {
                                permit.finish(Answer::Limited(after));
                                // The answer may have taught the API's own
                                // name for the bucket (Discord): close it too.
                                let learned = self.api.bucket(&req);
                                if learned != bucket {
                                    self.gate.close(&learned, after);
                                }
                            }
                            limited += 1;
                            if let Some(c) = self.rate_limited.get() {
                                c.inc();
                            }
                            let e = ChatError::rate_limited(
                                format!("{label} rate limit on {}: retry in {}", req.route, secs(after)),
                                after,
                            );
                            (e, Some(after))
                        }
                        Verdict::Retry(msg) => {
                            permit.finish(Answer::Unknown);
                            failures += 1;
                            maybe_applied |= req.creates();
                            (ChatError::transient(format!("{label} {}: {msg}", req.route)), None)
                        }
                    }
                }
                Err(e) => {
                    permit.finish(Answer::Unknown);
                    failures += 1;
                    // Only a failed connect proves the request never arrived.
                    maybe_applied |= req.creates() && !e.is_connect();
                    tracing::debug!(chat = label, method = %req.method, route = %req.route, elapsed_ms, error = %describe(&e, &self.opts), "chat API call failed");
                    (ChatError::transient(format!("{label} {}: {}", req.route, describe(&e, &self.opts))), None)
                }
            };

            let give_up = failures >= self.opts.max_attempts
                || limited > MAX_RATE_LIMITED
                || (maybe_applied && req.idempotency == Idempotency::Create);
            if give_up {
                return Err(with_applied(err, maybe_applied));
            }
            match rate_wait {
                // The gate holds the call at the top of the loop; a wait
                // beyond the budget goes back to the caller as the API
                // stated it, and so does any wait of a replaceable call.
                Some(after) if req.replaceable || Instant::now() + after > deadline => {
                    return Err(with_applied(err, maybe_applied));
                }
                Some(_) => {}
                None => {
                    let delay = backoff.next().unwrap_or(self.opts.max_backoff);
                    if Instant::now() + delay > deadline {
                        return Err(with_applied(err, maybe_applied));
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn send(&self, req: &Request) -> Result<Reply, reqwest::Error> {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(&req.segments);
        }
        if !req.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(req.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut builder = self
            .client
            .request(req.method.clone(), url)
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(body) = &req.body {
            builder = builder.json(body);
        }
        let mut resp = builder.send().await.map_err(reqwest::Error::without_url)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(reqwest::Error::without_url)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                // Treated as a server error: read what fits, the judge will
                // fail to parse it and ask for a retry.
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// The standard `User-Agent` of our clients.
pub fn user_agent() -> String {
    format!("teleport-plugin/{}", env!("CARGO_PKG_VERSION"))
}

fn with_applied(mut e: ChatError, maybe_applied: bool) -> ChatError {
    e.maybe_applied |= maybe_applied;
    e
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// A transport error in words, without URL (it may carry an email) and
/// without headers.
fn describe(e: &reqwest::Error, opts: &ClientOptions) -> String {
    if e.is_timeout() {
        if e.is_connect() {
            return format!("could not connect within {}", secs(opts.connect_timeout));
        }
        return format!(
            "no answer within {} (the request may have been carried out)",
            secs(opts.request_timeout)
        );
    }
    let mut msg = if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Helpers the chat `Api`s share for common answers.
pub mod common {
    use super::*;

    /// Server errors and gateway pages worth retrying; `None` for other statuses.
    pub fn retryable(label: &str, reply: &Reply) -> Option<Verdict> {
        let s = reply.status;
        (s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT)
            .then(|| Verdict::Retry(format!("{label} answered HTTP {}", s.as_u16())))
    }

    /// A 2xx answer whose body is not JSON.
    pub fn unreadable(label: &str, reply: &Reply) -> Verdict {
        Verdict::Retry(format!(
            "{label} answered HTTP {} with a body that is not JSON",
            reply.status.as_u16()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_keeps_the_longest_closure_and_expires() {
        let gate = RateGate::default();
        assert_eq!(gate.wait_time("a"), None);
        gate.close("a", Duration::from_secs(5));
        gate.close("a", Duration::from_secs(1));
        let w = gate.wait_time("a").expect("closed");
        assert!(w > Duration::from_secs(4), "{w:?}");
        assert_eq!(gate.wait_time("b"), None, "buckets are independent");
        gate.close_all(Duration::from_secs(2));
        assert!(gate.wait_time("b").is_some());
        gate.close("c", Duration::ZERO);
        assert!(
            gate.wait_time("c").is_some(),
            "global closure applies to every bucket"
        );
    }

    #[test]
    fn seconds_parse_like_the_apis_write_them() {
        assert_eq!(parse_secs("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_secs(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_secs("-3"), Some(Duration::ZERO));
        assert_eq!(parse_secs("1e12"), Some(MAX_RATE_WAIT));
        assert_eq!(parse_secs("NaN"), None);
        assert_eq!(parse_secs("soon"), None);
    }

    #[test]
    fn base_urls_get_a_trailing_slash_and_tokens_stay_out_of_debug() {
        struct Nop;
        impl Api for Nop {
            fn label(&self) -> &'static str {
                "Test"
            }
            fn judge(&self, _: &Request, _: &Reply) -> Verdict {
                Verdict::Done(Value::Null)
            }
        }
        let h = Http::new(
            "http://example.test/api/v4",
            "Bearer s3cret",
            "ua",
            ClientOptions::default(),
            Nop,
        )
        .unwrap();
        assert_eq!(h.base.as_str(), "http://example.test/api/v4/");
        assert!(!format!("{:?}", h.auth).contains("s3cret"));
        assert!(Http::new("not a url", "x", "ua", ClientOptions::default(), Nop).is_err());
        assert!(Http::new("ftp://x/", "x", "ua", ClientOptions::default(), Nop).is_err());
        let e = Http::new(
            "http://x/",
            "Bearer bad\nvalue",
            "ua",
            ClientOptions::default(),
            Nop,
        )
        .err()
        .unwrap();
        assert!(!e.contains("bad"), "{e}");
    }
}
