//! Per-request work queue.
//!
//! - One request is handled by at most one worker at a time, and its phases
//!   run in order: pending (post), then resolved (update), then deleted
//!   (expire). Several snapshots of one phase collapse into the newest.
//! - A failed attempt is retried after a delay, unless a later phase arrived
//!   meanwhile: a pending post is not owed any more once the request resolved.
//! - Snapshots older than what was already seen (catch-up listings race with
//!   live events) are dropped; so are exact repeats of work already settled.

use std::collections::{HashMap, VecDeque};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue::Key;

use super::plan::Snapshot;
use crate::model::AccessRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Pending,
    Resolved,
    Deleted,
}

/// How far along a request we have seen it: phase, then reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Progress(Phase, usize);

fn progress_of(s: &Snapshot) -> Progress {
    match s {
        Snapshot::Live(r) if r.state.is_resolved() => Progress(Phase::Resolved, r.reviews.len()),
        Snapshot::Live(r) => Progress(Phase::Pending, r.reviews.len()),
        Snapshot::Deleted(_) => Progress(Phase::Deleted, 0),
    }
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Queued,
    Running,
    Delayed(Key),
}

#[derive(Debug, Default)]
struct Entry {
    pending: Option<(AccessRequest, u64)>,
    resolved: Option<(AccessRequest, u64)>,
    deleted: Option<u64>,
    state: State,
    /// Phase and version handed to the running worker.
    running: Option<(Phase, u64)>,
    attempts: u32,
    /// First heard of from a live creation event: no plugin data can exist yet.
    fresh: bool,
}

impl Entry {
    fn first_phase(&self) -> Option<Phase> {
        if self.pending.is_some() {
            Some(Phase::Pending)
        } else if self.resolved.is_some() {
            Some(Phase::Resolved)
        } else if self.deleted.is_some() {
            Some(Phase::Deleted)
        } else {
            None
        }
    }

    fn version(&self, phase: Phase) -> Option<u64> {
        match phase {
            Phase::Pending => self.pending.as_ref().map(|p| p.1),
            Phase::Resolved => self.resolved.as_ref().map(|p| p.1),
            Phase::Deleted => self.deleted,
        }
    }

    fn clear(&mut self, phase: Phase) {
        match phase {
            Phase::Pending => self.pending = None,
            Phase::Resolved => self.resolved = None,
            Phase::Deleted => self.deleted = None,
        }
    }
}

/// What happened to an offered snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// Older than what was already seen.
    Stale,
    /// Exactly what was already handled to completion.
    Settled,
}

/// Work handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub snapshot: Snapshot,
    /// Earlier failed attempts at this phase.
    pub attempts: u32,
    /// The request was never seen before and came from a creation event, so
    /// the worker can skip reading plugin data.
    pub fresh: bool,
}

/// How a worker's attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Retry(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    progress: Progress,
    settled: bool,
}

pub struct Scheduler {
    entries: HashMap<String, Entry>,
    ready: VecDeque<String>,
    timers: DelayQueue<String>,
    seen: HashMap<String, Seen>,
    next_version: u64,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    pub fn new() -> Self {
        Self {
            entries: HashMap::new(),
            ready: VecDeque::new(),
            timers: DelayQueue::new(),
            seen: HashMap::new(),
            next_version: 0,
        }
    }

    /// Requests with queued, running or delayed work.
    pub fn active(&self) -> usize {
        self.entries.len()
    }

    /// Requests known to the scheduler (for memory accounting).
    pub fn tracked(&self) -> usize {
        self.seen.len()
    }

    /// Queues a snapshot. `fresh`: it comes from a live creation event.
    pub fn offer(&mut self, snap: Snapshot, fresh: bool) -> Offer {
        let id = snap.id().to_string();
        let progress = progress_of(&snap);
        let first_sight = !self.seen.contains_key(&id);
        if let Some(seen) = self.seen.get(&id) {
            if progress < seen.progress {
                return Offer::Stale;
            }
            if progress == seen.progress && seen.settled && !self.entries.contains_key(&id) {
                return Offer::Settled;
            }
        }
        self.seen.insert(id.clone(), Seen { progress, settled: false });
        self.next_version += 1;
        let version = self.next_version;
        let entry = self.entries.entry(id.clone()).or_insert_with(|| {
            self.ready.push_back(id.clone());
            Entry { fresh: fresh && first_sight, ..Entry::default() }
        });
        match snap {
            Snapshot::Live(r) if r.state.is_resolved() => entry.resolved = Some((r, version)),
            Snapshot::Live(r) => entry.pending = Some((r, version)),
            Snapshot::Deleted(_) => entry.deleted = Some(version),
        }
        entry.attempts = 0;
        if let State::Delayed(key) = std::mem::take(&mut entry.state) {
            // New information: try again now rather than at the timer.
            self.timers.remove(&key);
            self.ready.push_back(id);
        } else if entry.running.is_some() {
            entry.state = State::Running;
        }
        Offer::Queued
    }

    /// Hands out the next request to work on, marking it running.
    pub fn pop(&mut self) -> Option<Job> {
        while let Some(id) = self.ready.pop_front() {
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            if !matches!(entry.state, State::Queued) || entry.running.is_some() {
                continue;
            }
            let Some(phase) = entry.first_phase() else {
                self.entries.remove(&id);
                continue;
            };
            let version = entry.version(phase).expect("phase present");
            let snap = match phase {
                Phase::Pending => Snapshot::Live(entry.pending.as_ref().expect("present").0.clone()),
                Phase::Resolved => Snapshot::Live(entry.resolved.as_ref().expect("present").0.clone()),
                Phase::Deleted => Snapshot::Deleted(id.clone()),
            };
            entry.state = State::Running;
            entry.running = Some((phase, version));
            let fresh = std::mem::take(&mut entry.fresh);
            return Some(Job { snapshot: snap, attempts: entry.attempts, fresh });
        }
        None
    }

    /// Records how the running attempt on `id` ended.
    pub fn complete(&mut self, id: &str, outcome: Outcome) {
        let Some(entry) = self.entries.get_mut(id) else { return };
        let Some((phase, version)) = entry.running.take() else { return };
        let later_phase_waiting = match phase {
            Phase::Pending => entry.resolved.is_some() || entry.deleted.is_some(),
            Phase::Resolved => entry.deleted.is_some(),
            Phase::Deleted => false,
        };
        match outcome {
            Outcome::Done => {
                // Only clear the phase if no newer snapshot of it arrived meanwhile.
                if entry.version(phase) == Some(version) {
                    entry.clear(phase);
                }
                entry.attempts = 0;
            }
            Outcome::Retry(_) if later_phase_waiting => {
                // The request moved on; what was owed for this phase is not any more.
                entry.clear(phase);
                entry.attempts = 0;
            }
            Outcome::Retry(delay) => {
                if entry.version(phase) != Some(version) {
                    // Newer snapshot arrived while running: retry now with it.
                    entry.state = State::Queued;
                    self.ready.push_back(id.to_string());
                    return;
                }
                entry.attempts = entry.attempts.saturating_add(1);
                entry.state = State::Delayed(self.timers.insert(id.to_string(), delay));
                return;
            }
        }
        if entry.first_phase().is_some() {
            entry.state = State::Queued;
            self.ready.push_back(id.to_string());
        } else {
            self.entries.remove(id);
            if let Some(seen) = self.seen.get_mut(id) {
                seen.settled = true;
            }
        }
    }

    /// Moves requests whose retry delay elapsed back to the ready queue.
    pub fn poll_timers(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut fired = false;
        while let Poll::Ready(Some(expired)) = self.timers.poll_expired(cx) {
            let id = expired.into_inner();
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.state = State::Queued;
                self.ready.push_back(id);
                fired = true;
            }
        }
        if fired { Poll::Ready(()) } else { Poll::Pending }
    }

    /// Waits until a timer fires (pending forever while none is set).
    pub async fn timers_fired(&mut self) {
        std::future::poll_fn(|cx| self.poll_timers(cx)).await
    }

    /// Ids of requests waiting for a retry.
    pub fn delayed(&self) -> Vec<String> {
        self.entries.iter().filter(|(_, e)| matches!(e.state, State::Delayed(_))).map(|(k, _)| k.clone()).collect()
    }

    /// Forgets a request that was deleted long ago.
    pub fn forget(&mut self, id: &str) {
        if !self.entries.contains_key(id) {
            self.seen.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RequestState, Review};

    fn live(id: &str, state: RequestState, reviews: usize) -> Snapshot {
        let mut r = AccessRequest::new_pending(id, "u", vec!["r".into()]);
        r.state = state;
        r.reviews = (0..reviews)
            .map(|i| Review {
                author: format!("a{i}"),
                roles: vec![],
                proposed_state: RequestState::Approved,
                reason: String::new(),
                created: None,
            })
            .collect();
        Snapshot::Live(r)
    }

    fn reviews(s: &Snapshot) -> usize {
        match s {
            Snapshot::Live(r) => r.reviews.len(),
            Snapshot::Deleted(_) => 0,
        }
    }

    #[test]
    fn phases_run_in_order_and_collapse_within_a_phase() {
        let mut s = Scheduler::new();
        s.offer(live("a", RequestState::Pending, 0), false);
        s.offer(live("a", RequestState::Pending, 1), false);
        s.offer(live("a", RequestState::Approved, 1), false);
        let snap = s.pop().unwrap().snapshot;
        assert_eq!(reviews(&snap), 1, "newest pending snapshot");
        assert!(matches!(&snap, Snapshot::Live(r) if r.state == RequestState::Pending));
        assert!(s.pop().is_none(), "one worker per request");
        s.complete("a", Outcome::Done);
        let snap = s.pop().unwrap().snapshot;
        assert!(matches!(&snap, Snapshot::Live(r) if r.state == RequestState::Approved));
        s.complete("a", Outcome::Done);
        assert_eq!(s.active(), 0);
    }

    #[test]
    fn stale_and_settled_snapshots_are_dropped() {
        let mut s = Scheduler::new();
        s.offer(live("a", RequestState::Approved, 2), false);
        s.pop().unwrap();
        s.complete("a", Outcome::Done);
        assert_eq!(s.offer(live("a", RequestState::Pending, 5), false), Offer::Stale);
        assert_eq!(s.offer(live("a", RequestState::Approved, 2), false), Offer::Settled);
        assert_eq!(s.offer(live("a", RequestState::Approved, 3), false), Offer::Queued);
        assert_eq!(s.offer(Snapshot::Deleted("a".into()), false), Offer::Queued);
        assert_eq!(s.offer(live("a", RequestState::Approved, 9), false), Offer::Stale);
    }

    #[test]
    fn a_newer_snapshot_during_work_is_handled_after_it() {
        let mut s = Scheduler::new();
        s.offer(live("a", RequestState::Pending, 0), false);
        s.pop().unwrap();
        s.offer(live("a", RequestState::Pending, 1), false);
        assert!(s.pop().is_none());
        s.complete("a", Outcome::Done);
        let snap = s.pop().expect("newer snapshot runs next").snapshot;
        assert_eq!(reviews(&snap), 1);
    }

    #[test]
    fn a_failed_pending_phase_is_dropped_once_the_request_resolved() {
        let mut s = Scheduler::new();
        s.offer(live("a", RequestState::Pending, 0), false);
        s.pop().unwrap();
        s.offer(live("a", RequestState::Denied, 0), false);
        s.complete("a", Outcome::Retry(Duration::from_secs(60)));
        let Job { snapshot: snap, attempts, .. } = s.pop().expect("resolution runs at once");
        assert!(matches!(&snap, Snapshot::Live(r) if r.state == RequestState::Denied));
        assert_eq!(attempts, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_wait_for_their_delay_unless_news_arrive() {
        let mut s = Scheduler::new();
        s.offer(live("a", RequestState::Pending, 0), false);
        s.pop().unwrap();
        s.complete("a", Outcome::Retry(Duration::from_secs(5)));
        assert!(s.pop().is_none());
        assert_eq!(s.delayed(), vec!["a".to_string()]);
        tokio::time::timeout(Duration::from_secs(6), s.timers_fired()).await.expect("timer fires");
        let attempts = s.pop().unwrap().attempts;
        assert_eq!(attempts, 1);
        s.complete("a", Outcome::Retry(Duration::from_secs(60)));
        // A new review arrives: retried at once, attempts reset.
        s.offer(live("a", RequestState::Pending, 1), false);
        let Job { snapshot: snap, attempts, .. } = s.pop().unwrap();
        assert_eq!((reviews(&snap), attempts), (1, 0));
    }

    #[tokio::test]
    async fn only_the_first_sight_of_a_created_request_is_fresh() {
        let mut s = Scheduler::new();
        s.offer(live("a", RequestState::Pending, 0), true);
        assert!(s.pop().unwrap().fresh);
        s.complete("a", Outcome::Retry(Duration::ZERO));
        // A retry is no longer fresh: the first attempt may have written.
        s.offer(live("a", RequestState::Pending, 0), true);
        assert!(!s.pop().unwrap().fresh);
        // A request first listed by the catch-up is never fresh.
        s.offer(live("b", RequestState::Pending, 0), false);
        assert!(!s.pop().unwrap().fresh);
    }

    #[test]
    fn deleted_requests_can_be_forgotten() {
        let mut s = Scheduler::new();
        s.offer(Snapshot::Deleted("a".into()), false);
        s.pop().unwrap();
        s.complete("a", Outcome::Done);
        assert_eq!(s.tracked(), 1);
        s.forget("a");
        assert_eq!(s.tracked(), 0);
    }
}
