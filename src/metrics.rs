//! Prometheus metrics. One registry, passed down explicitly (no globals), so
//! tests can read the values they drive.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChatLabel {
    pub chat: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChatReason {
    pub chat: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub struct Metrics {
    pub events: Family<KindLabel, Counter>,
    pub posted: Family<ChatLabel, Counter>,
    pub updated: Family<ChatLabel, Counter>,
    pub replies: Family<ChatLabel, Counter>,
    pub notices: Family<ChatLabel, Counter>,
    pub retries: Family<ChatReason, Counter>,
    /// Rate-limit answers (HTTP 429) from a chat API.
    pub rate_limited: Family<ChatLabel, Counter>,
    pub failures: Family<ChatReason, Counter>,
    /// Event received → card posted.
    pub latency: Family<ChatLabel, Histogram, fn() -> Histogram>,
    pub tracked: Family<ChatLabel, Gauge>,
    pub routes: Family<SourceLabel, Gauge>,
    pub stream_up: Gauge,
    pub stream_reconnects: Counter,
    pub identity_not_after: Gauge<f64, AtomicU64>,
    pub identity_rotations: Counter,
    pub identity_failures: Family<SourceLabel, Counter>,
    /// Reviews from chat submitted to Teleport.
    pub reviews_submitted: Family<ChatLabel, Counter>,
    /// Clicks that submitted nothing, by reason (not_mapped, own_request, ...).
    pub reviews_refused: Family<ChatReason, Counter>,
    /// Interactivity callbacks refused with 401 (signature, timestamp, replay).
    pub callback_rejections: Family<ChatReason, Counter>,
    /// 1 while the chat's click connection (Socket Mode, Gateway) is up.
    pub click_connection_up: Family<ChatLabel, Gauge>,
    /// Click → outcome known.
    pub review_latency: Family<ChatLabel, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            events: Family::default(),
            posted: Family::default(),
            updated: Family::default(),
            replies: Family::default(),
            notices: Family::default(),
            retries: Family::default(),
            rate_limited: Family::default(),
            failures: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            tracked: Family::default(),
            routes: Family::default(),
            stream_up: Gauge::default(),
            stream_reconnects: Counter::default(),
            identity_not_after: Gauge::default(),
            identity_rotations: Counter::default(),
            identity_failures: Family::default(),
            reviews_submitted: Family::default(),
            reviews_refused: Family::default(),
            callback_rejections: Family::default(),
            click_connection_up: Family::default(),
            review_latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl Metrics {
    /// A registry exposing these metrics under `teleport_plugin_`.
    pub fn new_registered() -> (Arc<Self>, Registry) {
        let m = Arc::new(Self::default());
        let mut r = Registry::with_prefix("teleport_plugin");
        r.register("events", "Teleport events received, by kind", m.events.clone());
        r.register("messages_posted", "Request cards posted", m.posted.clone());
        r.register("messages_updated", "Request cards updated", m.updated.clone());
        r.register("review_replies", "Review replies posted in threads", m.replies.clone());
        r.register("requester_notices", "Direct messages sent to requesters", m.notices.clone());
        r.register("retries", "Chat or Teleport calls retried, by reason", m.retries.clone());
        r.register(
            "chat_rate_limited",
            "Rate-limit answers (HTTP 429) from a chat API; each one is waited out",
            m.rate_limited.clone(),
        );
        r.register("failures", "Deliveries given up after a permanent error, by reason", m.failures.clone());
        r.register(
            "notification_latency_seconds",
            "Time from receiving a request event to its card being posted",
            m.latency.clone(),
        );
        r.register("requests_tracked", "Requests with work in progress", m.tracked.clone());
        r.register("routes_loaded", "Routing entries loaded, by source", m.routes.clone());
        r.register("stream_up", "1 while the Teleport event stream is live", m.stream_up.clone());
        r.register("stream_reconnects", "Times the Teleport event stream was re-opened", m.stream_reconnects.clone());
        r.register(
            "identity_not_after_seconds",
            "Expiry of the identity in use (Unix seconds)",
            m.identity_not_after.clone(),
        );
        r.register("identity_rotations", "Identity rotations switched to", m.identity_rotations.clone());
        r.register("identity_failures", "Identity updates rejected, by source", m.identity_failures.clone());
        r.register("reviews_submitted", "Reviews from chat submitted to Teleport", m.reviews_submitted.clone());
        r.register("reviews_refused", "Approve/Deny clicks that submitted no review, by reason", m.reviews_refused.clone());
        r.register(
            "callback_rejections",
            "Chat interactivity callbacks refused with 401, by reason",
            m.callback_rejections.clone(),
        );
        r.register(
            "click_connection_up",
            "1 while a chat's click connection (Slack Socket Mode) is connected",
            m.click_connection_up.clone(),
        );
        r.register(
            "review_latency_seconds",
            "Time from a click reaching the plugin to its outcome being known",
            m.review_latency.clone(),
        );
        (m, r)
    }

    pub fn chat(chat: &str) -> ChatLabel {
        ChatLabel { chat: chat.to_string() }
    }

    pub fn reason(chat: &str, reason: &str) -> ChatReason {
        ChatReason { chat: chat.to_string(), reason: reason.to_string() }
    }
}

/// Renders the registry in the Prometheus/OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}
