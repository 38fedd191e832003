//! A watch stream that repeats and reorders access-request Puts: some are
//! sent twice, some are held back and delivered after newer events of the
//! same request (an older state of a request after a newer one, e.g.
//! PENDING with one review after APPROVED with two). A consumer must treat
//! events as hints about a request's state, never as a log to replay.
//!
//! Deletes are never reordered: a Put held back is released just before the
//! Delete of its request. A held Put whose request sees no newer event is
//! released, in order, after [`HOLD_LIMIT`].

use std::time::{Duration, Instant};

use teleport_plugin_proto::proto;

use crate::access::AccessRequestExt;

/// Longest time a Put is held back waiting for newer events to overtake it.
pub const HOLD_LIMIT: Duration = Duration::from_millis(500);

/// How watch streams opened from now on misbehave (every number is "every
/// n-th access-request Put of the stream"; 0 turns that part off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchDisorder {
    /// This Put is sent twice in a row.
    pub duplicate_every: u64,
    /// This Put is held back until `reorder_depth` newer events of the same
    /// request were sent (at least 1).
    pub reorder_every: u64,
    pub reorder_depth: u32,
}

/// What the stream did to an event it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    InOrder,
    /// The second copy of a Put.
    Duplicate,
    /// A Put delivered after newer events of its request.
    Stale,
}

struct Held {
    id: String,
    event: proto::Event,
    /// Newer events of the request still to let through before this one.
    behind: u32,
    /// A newer event of the request was sent before this one.
    overtaken: bool,
    since: Instant,
}

/// Per-stream state of the disorder.
pub(super) struct Disorder {
    cfg: WatchDisorder,
    puts: u64,
    held: Vec<Held>,
}

enum Subject<'a> {
    Put(&'a str),
    Delete(&'a str),
    Other,
}

fn subject(ev: &proto::Event) -> Subject<'_> {
    use proto::event::Resource;
    match ev.resource.as_ref() {
        Some(Resource::AccessRequest(r)) if ev.r#type == proto::Operation::Put as i32 => Subject::Put(r.id()),
        Some(Resource::ResourceHeader(h)) if h.kind == "access_request" && ev.r#type == proto::Operation::Delete as i32 => {
            Subject::Delete(h.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default())
        }
        _ => Subject::Other,
    }
}

impl Disorder {
    pub(super) fn new(cfg: WatchDisorder) -> Self {
        Self { cfg, puts: 0, held: Vec::new() }
    }

    /// The events to send, in order, for `ev` just published.
    pub(super) fn on_event(&mut self, ev: proto::Event) -> Vec<(proto::Event, Sent)> {
        let mut out = Vec::new();
        match subject(&ev) {
            Subject::Other => out.push((ev, Sent::InOrder)),
            Subject::Delete(id) => {
                let id = id.to_string();
                out.extend(self.release(|h| h.id == id));
                out.push((ev, Sent::InOrder));
            }
            Subject::Put(id) => {
                let id = id.to_string();
                self.puts += 1;
                let n = self.puts;
                let already_held = self.held.iter().any(|h| h.id == id);
                if !already_held && self.cfg.reorder_every > 0 && n % self.cfg.reorder_every == 0 {
                    let behind = self.cfg.reorder_depth.max(1);
                    self.held.push(Held { id, event: ev, behind, overtaken: false, since: Instant::now() });
                    return out;
                }
                let twice = self.cfg.duplicate_every > 0 && n % self.cfg.duplicate_every == 0;
                out.push((ev.clone(), Sent::InOrder));
                if twice {
                    out.push((ev, Sent::Duplicate));
                }
                // Held Puts of this request are now one event further behind.
                for h in self.held.iter_mut().filter(|h| h.id == id) {
                    h.behind = h.behind.saturating_sub(1);
                    h.overtaken = true;
                }
                out.extend(self.release(|h| h.behind == 0));
            }
        }
        out
    }

    /// When the oldest held Put is due for release.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.since + HOLD_LIMIT).min()
    }

    /// Held Puts past [`HOLD_LIMIT`] (fewer newer events than asked for
    /// came).
    pub(super) fn due(&mut self, now: Instant) -> Vec<(proto::Event, Sent)> {
        self.release(|h| h.since + HOLD_LIMIT <= now)
    }

    /// Takes the held Puts `which` selects; those a newer event overtook
    /// are stale.
    fn release(&mut self, which: impl Fn(&Held) -> bool) -> Vec<(proto::Event, Sent)> {
        let (out, keep): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held).into_iter().partition(|h| which(h));
        self.held = keep;
        out.into_iter().map(|h| (h.event, if h.overtaken { Sent::Stale } else { Sent::InOrder })).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use teleport_plugin_proto::types;

    fn put(id: &str, reviews: usize) -> proto::Event {
        let mut r = crate::access::new_request("alice", &["editor"]);
        r.metadata_mut().name = id.into();
        r.spec_mut().reviews = (0..reviews).map(|i| crate::access::review(&format!("r{i}"), true, "")).collect();
        proto::Event { r#type: proto::Operation::Put as i32, resource: Some(proto::event::Resource::AccessRequest(r)) }
    }

    fn reviews(ev: &proto::Event) -> usize {
        match ev.resource.as_ref() {
            Some(proto::event::Resource::AccessRequest(r)) => r.spec.as_ref().map_or(0, |s| s.reviews.len()),
            _ => usize::MAX,
        }
    }

    #[test]
    fn a_held_put_comes_after_newer_states_of_its_request() {
        let mut d = Disorder::new(WatchDisorder { duplicate_every: 0, reorder_every: 2, reorder_depth: 2 });
        assert_eq!(d.on_event(put("a", 0)).len(), 1);
        assert!(d.on_event(put("a", 1)).is_empty(), "second Put held");
        // Another request's event does not overtake it.
        assert_eq!(d.on_event(put("b", 0)).len(), 1);
        assert_eq!(d.on_event(put("a", 2)).iter().map(|(e, _)| reviews(e)).collect::<Vec<_>>(), vec![2]);
        let out = d.on_event(put("a", 3));
        assert_eq!(out.iter().map(|(e, s)| (reviews(e), *s)).collect::<Vec<_>>(), vec![(3, Sent::InOrder), (1, Sent::Stale)]);
    }

    #[test]
    fn duplicates_and_deletes_and_the_hold_limit() {
        let mut d = Disorder::new(WatchDisorder { duplicate_every: 1, reorder_every: 0, reorder_depth: 0 });
        let out = d.on_event(put("a", 0));
        assert_eq!(out.iter().map(|(_, s)| *s).collect::<Vec<_>>(), vec![Sent::InOrder, Sent::Duplicate]);

        let mut d = Disorder::new(WatchDisorder { duplicate_every: 0, reorder_every: 1, reorder_depth: 1 });
        assert!(d.on_event(put("a", 0)).is_empty());
        let delete = proto::Event {
            r#type: proto::Operation::Delete as i32,
            resource: Some(proto::event::Resource::ResourceHeader(types::ResourceHeader {
                kind: "access_request".into(),
                metadata: Some(types::Metadata { name: "a".into(), ..Default::default() }),
                ..Default::default()
            })),
        };
        let out = d.on_event(delete);
        assert_eq!(out.iter().map(|(e, _)| reviews(e)).collect::<Vec<_>>(), vec![0, usize::MAX], "released before the delete");

        assert!(d.on_event(put("b", 0)).is_empty());
        let deadline = d.deadline().expect("held");
        assert!(d.due(deadline - Duration::from_millis(1)).is_empty());
        assert_eq!(d.due(deadline).iter().map(|(_, s)| *s).collect::<Vec<_>>(), vec![Sent::InOrder], "not overtaken");

        // Overtaken by one newer Put of two asked for: stale when its time is up.
        let mut d = Disorder::new(WatchDisorder { duplicate_every: 0, reorder_every: 1, reorder_depth: 2 });
        assert!(d.on_event(put("c", 0)).is_empty());
        assert_eq!(d.on_event(put("c", 1)).len(), 1);
        let deadline = d.deadline().expect("held");
        assert_eq!(d.due(deadline).iter().map(|(e, s)| (reviews(e), *s)).collect::<Vec<_>>(), vec![(0, Sent::Stale)]);
        assert!(d.deadline().is_none());
    }
}
