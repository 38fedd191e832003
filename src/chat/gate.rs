//! When may a call to a rate-limit bucket go? The pure bookkeeping behind
//! [`super::http::RateGate`]: every function takes the current time, so the
//! rules are tested without sleeping.
//!
//! - A closed bucket (a 429's `Retry-After`, or headers saying nothing is
//!   left) admits nothing until the window ends; callers ask again after
//!   waking, so a window announced while they slept still holds them.
//! - When a window ends, one call probes; the others wait for its answer
//!   instead of all firing at once.
//! - A bucket that has refused us is paced: calls get slots spaced by the
//!   interval the API has shown (calls it accepted, over the time they took
//!   plus the wait it asked for). Slack sends no remaining-count headers, so
//!   this is the only way to stay under its limits. The pace is forgotten
//!   once the bucket has been idle for a while.
//! - At most [`MAX_IN_FLIGHT`] calls per bucket are out or hold a slot, which
//!   bounds how many can hit a limit we have not seen yet. As many more may
//!   wait for a turn; further callers of a limited bucket are sent away until
//!   about their turn, so a backlog to one bucket does not occupy every
//!   worker (the engine queues them without holding one).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Calls per bucket sent or holding a slot at once.
pub const MAX_IN_FLIGHT: u32 = 8;
/// A learned pace is dropped after the bucket was unused this long.
const PACE_MEMORY: Duration = Duration::from_secs(60);
/// Longest pace learned (a bogus answer must not slow a bucket to a crawl).
const MAX_PACE: Duration = Duration::from_secs(60);
/// Accepted calls further apart than this start a new count for the pace.
const STREAK_GAP: Duration = Duration::from_secs(10);

/// How a call's answer bears on its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The API accepted the call (whatever its result).
    Accepted,
    /// Refused for the rate limit: wait this long.
    Limited(Duration),
    /// No answer, or a server error: says nothing about the limit.
    Unknown,
}

/// What a caller may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Send at `ticket.at` (now, or a reserved slot).
    Go(Ticket),
    /// Nothing goes before `until` (a closed window, or the first free slot
    /// lies beyond the caller's limit): ask again then, or give up.
    Wait { until: Instant },
    /// Others hold the turn (a probe, or the in-flight cap): ask again when
    /// one of them is answered.
    Queue,
}

/// An admitted call; hand it back through [`Gate::finish`] or [`Gate::cancel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub at: Instant,
    probe: bool,
}

#[derive(Debug, Default)]
struct Bucket {
    closed_until: Option<Instant>,
    /// A window ended (or will) and no call has tried since.
    needs_probe: bool,
    probing: bool,
    in_flight: u32,
    /// Callers waiting for a turn (they hold a worker meanwhile).
    waiting: u32,
    pace: Option<Duration>,
    /// Earliest slot for the next paced call.
    next_slot: Option<Instant>,
    /// Calls accepted since the last refusal (or a pause), when the first
    /// and the last of them were sent.
    accepted: u32,
    accepted_since: Option<Instant>,
    last_accepted: Option<Instant>,
}

impl Bucket {
    fn closed(&self, now: Instant) -> Option<Instant> {
        self.closed_until.filter(|u| *u > now)
    }

    fn close(&mut self, until: Instant) {
        self.closed_until = Some(self.closed_until.map_or(until, |u| u.max(until)));
        self.needs_probe = true;
    }

    /// Nothing to remember: no window, no pace, nothing out.
    fn idle(&self, now: Instant) -> bool {
        self.closed(now).is_none() && self.pace.is_none() && self.in_flight == 0 && self.waiting == 0 && !self.probing
    }
}

/// Rate-limit state of one chat client.
#[derive(Debug, Default)]
pub struct Gate {
    global_until: Option<Instant>,
    buckets: HashMap<String, Bucket>,
}

impl Gate {
    /// Keeps `bucket` closed until `until` (never shortens a closure).
    pub fn close(&mut self, bucket: &str, until: Instant) {
        self.buckets.entry(bucket.to_string()).or_default().close(until);
    }

    /// Closes every bucket until `until`.
    pub fn close_all(&mut self, until: Instant) {
        self.global_until = Some(self.global_until.map_or(until, |g| g.max(until)));
    }

    /// Until when `bucket` is closed, if it is.
    pub fn closed_until(&self, bucket: &str, now: Instant) -> Option<Instant> {
        let own = self.buckets.get(bucket).and_then(|b| b.closed(now));
        [self.global_until.filter(|g| *g > now), own].into_iter().flatten().max()
    }

    /// A caller starts waiting for a turn in `bucket`. A limited bucket
    /// (closed or paced) with [`MAX_IN_FLIGHT`] callers already out or
    /// waiting sends it away for about the time their turns take: `Err`.
    pub fn arrive(&mut self, bucket: &str, now: Instant) -> Result<(), Duration> {
        let closed = self.closed_until(bucket, now);
        let b = self.buckets.entry(bucket.to_string()).or_default();
        let busy = b.waiting + b.in_flight;
        if (closed.is_some() || b.pace.is_some()) && busy >= MAX_IN_FLIGHT {
            let pace = b.pace.unwrap_or(Duration::from_secs(1));
            return Err(self.retry_hint(bucket, now) + pace * busy);
        }
        b.waiting += 1;
        Ok(())
    }

    /// The caller stopped waiting (it got its turn, or gave up).
    pub fn leave(&mut self, bucket: &str) {
        if let Some(b) = self.buckets.get_mut(bucket) {
            b.waiting = b.waiting.saturating_sub(1);
        }
    }

    /// Asks to send a call to `bucket` at `now`; a slot later than `latest`
    /// is not reserved (the caller cannot wait that long).
    pub fn admit(&mut self, bucket: &str, now: Instant, latest: Instant) -> Admit {
        if let Some(until) = self.closed_until(bucket, now) {
            return Admit::Wait { until };
        }
        self.tidy(now);
        let b = self.buckets.entry(bucket.to_string()).or_default();
        if b.probing || b.in_flight >= MAX_IN_FLIGHT {
            return Admit::Queue;
        }
        if b.pace.is_some() && b.next_slot.is_some_and(|s| now > s + PACE_MEMORY) {
            // Unused for long enough: whatever limit we met may have passed.
            b.pace = None;
        }
        if b.needs_probe {
            b.needs_probe = false;
            b.probing = true;
            b.in_flight += 1;
            return Admit::Go(Ticket { at: now, probe: true });
        }
        let at = b.next_slot.map_or(now, |s| s.max(now));
        if at > latest {
            return Admit::Wait { until: at };
        }
        if let Some(pace) = b.pace {
            b.next_slot = Some(at + pace);
        }
        b.in_flight += 1;
        Admit::Go(Ticket { at, probe: false })
    }

    /// Gives an admitted call's turn back unused.
    pub fn cancel(&mut self, bucket: &str, ticket: &Ticket) {
        if let Some(b) = self.buckets.get_mut(bucket) {
            b.in_flight = b.in_flight.saturating_sub(1);
            if ticket.probe {
                b.probing = false;
                b.needs_probe = true;
            }
        }
    }

    /// Records the answer to an admitted call, answered at `now`.
    pub fn finish(&mut self, bucket: &str, ticket: &Ticket, answer: Answer, now: Instant) {
        let b = self.buckets.entry(bucket.to_string()).or_default();
        b.in_flight = b.in_flight.saturating_sub(1);
        if ticket.probe {
            b.probing = false;
        }
        match answer {
            Answer::Accepted => {
                if b.last_accepted.is_some_and(|l| ticket.at.saturating_duration_since(l) > STREAK_GAP) {
                    // After a pause the earlier calls say nothing about the rate.
                    b.accepted = 0;
                    b.accepted_since = None;
                }
                b.accepted += 1;
                b.accepted_since.get_or_insert(ticket.at);
                b.last_accepted = Some(ticket.at);
                if let Some(pace) = b.pace {
                    let after_me = ticket.at + pace;
                    b.next_slot = Some(b.next_slot.map_or(after_me, |s| s.max(after_me)));
                }
            }
            Answer::Limited(wait) => {
                // Refusals of calls that were out together belong to the
                // window the first of them announced: only that one teaches.
                if b.closed(now).is_none() {
                    // The rate it has shown: what it accepted since the last
                    // refusal, over that time plus the wait it asks for now.
                    let shown = match (b.accepted, b.accepted_since) {
                        (n, Some(since)) if n > 0 => (now.saturating_duration_since(since) + wait) / n,
                        _ => wait,
                    };
                    b.pace = Some(shown.min(MAX_PACE));
                }
                b.accepted = 0;
                b.accepted_since = None;
                b.last_accepted = None;
                let until = now + wait;
                b.close(until);
                b.next_slot = Some(b.next_slot.map_or(until, |s| s.max(until)));
            }
            Answer::Unknown => {
                if ticket.probe {
                    // Let the next caller probe.
                    b.needs_probe = true;
                }
            }
        }
    }

    /// How long a caller that cannot wait should stay away from `bucket`.
    pub fn retry_hint(&self, bucket: &str, now: Instant) -> Duration {
        let b = self.buckets.get(bucket);
        let slot = b.and_then(|b| b.next_slot).map(|s| s.saturating_duration_since(now));
        let pace = b.and_then(|b| b.pace);
        [self.closed_until(bucket, now).map(|u| u - now), slot, pace]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(Duration::from_millis(100))
            .max(Duration::from_millis(100))
    }

    /// Forgets buckets with nothing to remember (keeps the map small).
    fn tidy(&mut self, now: Instant) {
        if self.global_until.is_some_and(|g| g <= now) {
            self.global_until = None;
        }
        if self.buckets.len() > 256 {
            self.buckets.retain(|_, b| !b.idle(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn go(a: Admit) -> Ticket {
        match a {
            Admit::Go(t) => t,
            other => panic!("expected Go, got {other:?}"),
        }
    }

    #[test]
    fn a_closed_bucket_waits_and_a_later_window_extends_the_wait() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        let mut g = Gate::default();
        g.close("a", t0 + S);
        assert_eq!(g.admit("a", t0, far), Admit::Wait { until: t0 + S });
        // Announced while the first caller slept: it still holds.
        g.close("a", t0 + 2 * S);
        assert_eq!(g.admit("a", t0 + S, far), Admit::Wait { until: t0 + 2 * S });
        assert!(matches!(g.admit("b", t0, far), Admit::Go(_)), "buckets are independent");
        g.close_all(t0 + 5 * S);
        assert_eq!(g.admit("b", t0, far), Admit::Wait { until: t0 + 5 * S });
    }

    #[test]
    fn one_call_probes_when_a_window_ends_and_the_rest_follow_its_answer() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        let mut g = Gate::default();
        let first = go(g.admit("a", t0, far));
        g.finish("a", &first, Answer::Limited(S), t0);
        let t1 = t0 + S;
        let probe = go(g.admit("a", t1, far));
        assert_eq!(probe.at, t1);
        assert_eq!(g.admit("a", t1, far), Admit::Queue, "others wait for the probe");
        g.finish("a", &probe, Answer::Accepted, t1 + Duration::from_millis(5));
        // Paced at the shown rate: one per second after the probe.
        let next = go(g.admit("a", t1, far));
        assert_eq!(next.at, t1 + S);
        let after = go(g.admit("a", t1, far));
        assert_eq!(after.at, t1 + 2 * S);
        // A caller that cannot wait that long gets no slot.
        assert_eq!(g.admit("a", t1, t1 + S), Admit::Wait { until: t1 + 3 * S });
    }

    #[test]
    fn a_failed_probe_hands_the_turn_on() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        let mut g = Gate::default();
        g.close("a", t0);
        let probe = go(g.admit("a", t0, far));
        g.finish("a", &probe, Answer::Unknown, t0);
        let again = go(g.admit("a", t0, far));
        g.cancel("a", &again);
        assert!(matches!(g.admit("a", t0, far), Admit::Go(_)));
    }

    #[test]
    fn the_pace_is_learned_from_what_the_api_accepted() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        let mut g = Gate::default();
        // Slack: three accepted in a burst, then refusals for a one-second
        // wait (the first refusal of the window teaches): a third of a second.
        let ts: Vec<Ticket> = (0..5).map(|_| go(g.admit("a", t0, far))).collect();
        for t in &ts[..3] {
            g.finish("a", t, Answer::Accepted, t0);
        }
        g.finish("a", &ts[3], Answer::Limited(S), t0);
        g.finish("a", &ts[4], Answer::Limited(S), t0);
        let t1 = t0 + S;
        let probe = go(g.admit("a", t1, far));
        g.finish("a", &probe, Answer::Accepted, t1);
        let third = S / 3;
        let next = go(g.admit("a", t1, far));
        assert_eq!(next.at, t1 + third);
        // Too fast for one a second: refused, and the reading corrects it.
        g.finish("a", &next, Answer::Limited(S), next.at);
        let t2 = next.at + S;
        let probe = go(g.admit("a", t2, far));
        g.finish("a", &probe, Answer::Accepted, t2);
        assert_eq!(go(g.admit("a", t2, far)).at, t2 + third + S);
        // A pause long before the burst does not count as slowness.
        let mut g = Gate::default();
        let early = go(g.admit("p", t0, far));
        g.finish("p", &early, Answer::Accepted, t0);
        let burst = t0 + Duration::from_secs(600);
        let b1 = go(g.admit("p", burst, far));
        g.finish("p", &b1, Answer::Accepted, burst);
        let b2 = go(g.admit("p", burst, far));
        g.finish("p", &b2, Answer::Limited(S), burst);
        let probe = go(g.admit("p", burst + S, far));
        g.finish("p", &probe, Answer::Accepted, burst + S);
        assert_eq!(go(g.admit("p", burst + S, far)).at, burst + 2 * S);
        // A limit of 50 a minute, met after 50 calls 10 s in: 1.2 s apart.
        let mut g = Gate::default();
        for i in 0..50u32 {
            let t = go(g.admit("m", t0 + i * Duration::from_millis(200), far));
            g.finish("m", &t, Answer::Accepted, t.at);
        }
        let t = go(g.admit("m", t0 + Duration::from_secs(10), far));
        g.finish("m", &t, Answer::Limited(Duration::from_secs(50)), t0 + Duration::from_secs(10));
        let t2 = t0 + Duration::from_secs(60);
        let probe = go(g.admit("m", t2, far));
        g.finish("m", &probe, Answer::Accepted, t2);
        assert_eq!(go(g.admit("m", t2, far)).at, t2 + Duration::from_millis(1200));
    }

    #[test]
    fn in_flight_calls_per_bucket_are_capped_and_the_pace_is_forgotten() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        let mut g = Gate::default();
        let ts: Vec<Ticket> = (0..MAX_IN_FLIGHT).map(|_| go(g.admit("a", t0, far))).collect();
        assert_eq!(g.admit("a", t0, far), Admit::Queue, "not paced: wait for a turn");
        g.finish("a", &ts[0], Answer::Limited(S), t0);
        for t in &ts[1..] {
            g.finish("a", t, Answer::Unknown, t0);
        }
        let probe = go(g.admit("a", t0 + S, far));
        g.finish("a", &probe, Answer::Accepted, t0 + S);
        // Paced, with every turn taken: sent away until about its turn.
        let slots: Vec<Ticket> = (0..MAX_IN_FLIGHT).map(|_| go(g.admit("a", t0 + S, far))).collect();
        assert_eq!(g.arrive("a", t0 + S), Err(9 * S + MAX_IN_FLIGHT * S));
        assert_eq!(g.arrive("b", t0 + S), Ok(()), "an unlimited bucket lets callers wait");
        for t in &slots {
            g.finish("a", t, Answer::Accepted, t.at);
        }
        let later = t0 + 10 * S + PACE_MEMORY + S;
        assert_eq!(go(g.admit("a", later, far)).at, later);
        assert_eq!(go(g.admit("a", later, far)).at, later, "no pace any more");
    }
}
