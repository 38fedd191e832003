//! The decision core: given what Teleport says about a request (the
//! snapshot) and what plugin data says we already did (the record), what is
//! the next step? Pure and table-tested; the executor does the I/O.
//!
//! The record doubles as a lock and a journal:
//! - a *claim* (owner, epoch, lease) makes one replica responsible for the
//!   non-idempotent steps (posting cards, replies, notices); others wait for
//!   the lease to end and take over if the owner vanished;
//! - `pending` lists the targets whose card is not yet posted, written before
//!   any post, so a crash leaves a trace: the next owner looks those targets
//!   up before posting again, which keeps delivery exactly-once in effect.

use std::collections::{BTreeMap, HashSet};

use crate::chat::Capabilities;
use crate::model::{AccessRequest, RequestState};
use crate::teleport::plugin_data::{RequestData, Resolution};

/// Keys of our own bookkeeping, stored next to the official keys.
pub mod keys {
    pub const OWNER: &str = "notify_owner";
    pub const EPOCH: &str = "notify_epoch";
    pub const LEASE: &str = "notify_lease";
    pub const SINCE: &str = "notify_since";
    pub const PENDING: &str = "notify_pending";
    pub const RENDERED: &str = "notify_rendered";
    pub const REPLIED: &str = "notify_replied";
    pub const REACTED: &str = "notify_reacted";
    pub const NOTICE: &str = "notify_notice";
    pub const FAILED: &str = "notify_failed";
}

/// Requester notice state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Notice {
    #[default]
    Due,
    Sent,
    /// No DM can be opened for the requester, or it failed for good.
    Skipped,
}

/// Our bookkeeping, decoded from the record's extra keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub owner: String,
    pub epoch: String,
    /// Unix milliseconds until which the owner's claim holds.
    pub lease_until: u64,
    /// Unix milliseconds of the first claim: look-ups start there.
    pub since: u64,
    /// Targets whose card still has to be posted.
    pub pending: Vec<String>,
    /// Fingerprint of what every posted card shows.
    pub rendered: String,
    /// Indexes of messages already replied to for review `reviews_count`.
    pub replied: Vec<usize>,
    pub reacted: bool,
    pub notice: Notice,
    /// Targets given up on after a permanent error.
    pub failed: Vec<String>,
}

fn json_list<T: serde::de::DeserializeOwned>(s: Option<&String>) -> Vec<T> {
    s.filter(|s| !s.is_empty()).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
}

impl Progress {
    pub fn read(extra: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| extra.get(k).cloned().unwrap_or_default();
        Self {
            owner: get(keys::OWNER),
            epoch: get(keys::EPOCH),
            lease_until: get(keys::LEASE).parse().unwrap_or(0),
            since: get(keys::SINCE).parse().unwrap_or(0),
            pending: json_list(extra.get(keys::PENDING)),
            rendered: get(keys::RENDERED),
            replied: json_list(extra.get(keys::REPLIED)),
            reacted: get(keys::REACTED) == "1",
            notice: match get(keys::NOTICE).as_str() {
                "sent" => Notice::Sent,
                "skipped" => Notice::Skipped,
                _ => Notice::Due,
            },
            failed: json_list(extra.get(keys::FAILED)),
        }
    }

    /// Writes every key; empty values delete the key on the server.
    pub fn write(&self, extra: &mut BTreeMap<String, String>) {
        let list = |v: &Vec<String>| if v.is_empty() { String::new() } else { serde_json::to_string(v).unwrap_or_default() };
        let num = |n: u64| if n == 0 { String::new() } else { n.to_string() };
        extra.insert(keys::OWNER.into(), self.owner.clone());
        extra.insert(keys::EPOCH.into(), self.epoch.clone());
        extra.insert(keys::LEASE.into(), num(self.lease_until));
        extra.insert(keys::SINCE.into(), num(self.since));
        extra.insert(keys::PENDING.into(), list(&self.pending));
        extra.insert(keys::RENDERED.into(), self.rendered.clone());
        extra.insert(
            keys::REPLIED.into(),
            if self.replied.is_empty() { String::new() } else { serde_json::to_string(&self.replied).unwrap_or_default() },
        );
        extra.insert(keys::REACTED.into(), if self.reacted { "1".into() } else { String::new() });
        extra.insert(
            keys::NOTICE.into(),
            match self.notice {
                Notice::Due => String::new(),
                Notice::Sent => "sent".into(),
                Notice::Skipped => "skipped".into(),
            },
        );
        extra.insert(keys::FAILED.into(), list(&self.failed));
    }
}

/// Plugin data as the engine sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub data: RequestData,
    pub progress: Progress,
}

impl Record {
    pub fn from_data(data: RequestData) -> Self {
        let progress = Progress::read(&data.extra);
        Self { data, progress }
    }

    pub fn into_data(mut self) -> RequestData {
        self.progress.write(&mut self.data.extra);
        self.data
    }
}

/// What Teleport says about the request now.
#[allow(clippy::large_enum_variant)] // short-lived; boxing would only add allocations
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    Live(AccessRequest),
    Deleted(String),
}

impl Snapshot {
    pub fn id(&self) -> &str {
        match self {
            Self::Live(r) => &r.id,
            Self::Deleted(id) => id,
        }
    }

    /// The resolution this snapshot implies.
    pub fn resolution(&self) -> Resolution {
        match self {
            Self::Live(r) => match r.state {
                RequestState::Approved => Resolution::Approved,
                RequestState::Denied => Resolution::Denied,
                RequestState::Promoted => Resolution::Promoted,
                _ => Resolution::Unresolved,
            },
            Self::Deleted(_) => Resolution::Expired,
        }
    }
}

/// This process, as it identifies itself in claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub instance: String,
    /// Changes at every start, so a restarted replica knows the claims of its
    /// previous life are stale.
    pub epoch: String,
}

pub struct Input<'a> {
    pub snapshot: &'a Snapshot,
    pub record: Option<&'a Record>,
    pub me: &'a Me,
    pub now_ms: u64,
    pub caps: Capabilities,
    /// Targets whose last post in this process ended without a clear answer.
    pub uncertain: &'a HashSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing is owed for this request (e.g. resolved before it was posted).
    Skip(&'static str),
    /// Everything is done.
    Done,
    /// Resolve recipients and create the record (only if none exists yet).
    Claim,
    /// Another live replica holds the claim.
    Wait { until_ms: u64 },
    /// Take over the claim (expired, released, or from our previous life).
    TakeOver,
    /// Record the outcome; pending posts are dropped.
    MarkResolved { resolution: Resolution },
    /// Post the card to `target`; look it up first when it may exist.
    Post { target: String, lookup_first: bool },
    /// Post the reply for review `review` under message `message`.
    Reply { review: usize, message: usize, lookup_first: bool },
    /// Every card has its reply for review `reviews_count`: count it.
    FinishReplies,
    /// Re-render every card to show `fingerprint`.
    UpdateAll { fingerprint: String },
    React,
    NotifyRequester,
    /// Work is done; give the claim up so others need not wait.
    Release,
}

impl Step {
    /// Steps that must not run twice, hence need the claim.
    fn needs_claim(&self) -> bool {
        matches!(self, Self::Post { .. } | Self::Reply { .. } | Self::NotifyRequester)
    }
}

/// Fingerprint of what a card shows: status, reviews and resolve reason.
pub fn fingerprint(status: &str, reviews: usize, resolve_reason: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, resolve_reason.as_bytes());
    format!("{status}:{reviews}:{}", hex::encode(&digest.as_ref()[..4]))
}

/// Status text a card should show for this snapshot and record.
pub fn status_of(snapshot: &Snapshot, record: &Record) -> &'static str {
    let res = if record.data.resolution.is_resolved() { record.data.resolution } else { snapshot.resolution() };
    crate::chat::Status::from_resolution(res).as_str()
}

/// Number of reviews the snapshot carries (the record's count when deleted).
pub fn review_count(snapshot: &Snapshot, record: &Record) -> usize {
    match snapshot {
        Snapshot::Live(r) => r.reviews.len(),
        Snapshot::Deleted(_) => record.data.reviews_count,
    }
}

pub fn resolve_reason<'a>(snapshot: &'a Snapshot, record: &'a Record) -> &'a str {
    match snapshot {
        Snapshot::Live(r) if !r.resolve_reason.is_empty() => &r.resolve_reason,
        _ => &record.data.resolve_reason,
    }
}

/// The next step for one request.
pub fn next_step(inp: &Input<'_>) -> Step {
    let Some(rec) = inp.record else {
        return match inp.snapshot {
            Snapshot::Live(r) if r.state == RequestState::Pending => Step::Claim,
            Snapshot::Live(_) => Step::Skip("resolved before it was posted"),
            Snapshot::Deleted(_) => Step::Skip("deleted before it was posted"),
        };
    };
    let work = work(inp, rec);
    let p = &rec.progress;
    let mine = p.owner == inp.me.instance && p.epoch == inp.me.epoch;
    match work {
        Step::Done if mine => Step::Release,
        w if w.needs_claim() && !mine => {
            if !p.owner.is_empty() && p.owner != inp.me.instance && p.lease_until > inp.now_ms {
                Step::Wait { until_ms: p.lease_until }
            } else {
                Step::TakeOver
            }
        }
        w => w,
    }
}

/// The next piece of work, regardless of who holds the claim.
fn work(inp: &Input<'_>, rec: &Record) -> Step {
    let d = &rec.data;
    let p = &rec.progress;
    let wanted = inp.snapshot.resolution();
    if !d.resolution.is_resolved() && wanted.is_resolved() {
        return Step::MarkResolved { resolution: wanted };
    }
    if !d.resolution.is_resolved()
        && let Some(t) = p.pending.first()
    {
        return Step::Post { target: t.clone(), lookup_first: inp.uncertain.contains(t) };
    }
    let reviews = review_count(inp.snapshot, rec);
    if inp.caps.threads && reviews > d.reviews_count && !d.messages.is_empty() {
        let k = d.reviews_count;
        return match (0..d.messages.len()).find(|m| !p.replied.contains(m)) {
            Some(m) => Step::Reply { review: k, message: m, lookup_first: inp.uncertain.contains(&reply_key(k, m)) },
            None => Step::FinishReplies,
        };
    }
    let fp = fingerprint(status_of(inp.snapshot, rec), reviews, resolve_reason(inp.snapshot, rec));
    if !d.messages.is_empty() && p.rendered != fp {
        return Step::UpdateAll { fingerprint: fp };
    }
    if !inp.caps.threads && reviews > d.reviews_count {
        // No threads: the card update above showed the reviews; count them.
        return Step::FinishReplies;
    }
    if matches!(d.resolution, Resolution::Approved | Resolution::Denied)
        && inp.caps.reactions
        && !p.reacted
        && !d.messages.is_empty()
    {
        return Step::React;
    }
    if d.resolution.is_resolved() && p.notice == Notice::Due {
        return Step::NotifyRequester;
    }
    Step::Done
}

/// Key of a reply in the "uncertain" set.
pub fn reply_key(review: usize, message: usize) -> String {
    format!("reply:{review}:{message}")
}

/// Key of the requester notice in the "uncertain" set.
pub const NOTICE_KEY: &str = "notice";

#[cfg(test)]
mod tests;
