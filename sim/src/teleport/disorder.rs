//! A watch stream that repeats and reorders access-request Puts: some are
//! sent twice, some are held back for a while and newer events of the same
//! request overtake them, so an older state of a request arrives after a
//! newer one (e.g. PENDING with one review after APPROVED with two), late
//! enough that the newer one was already acted on. A consumer must treat
//! events as hints about a request's state, never as a log to replay.
//!
//! Deletes are never reordered: a Put held back is released just before the
//! Delete of its request.

use std::time::{Duration, Instant};

use teleport_plugin_proto::proto;

use crate::access::AccessRequestExt;

/// How watch streams opened from now on misbehave (every number is "every
/// n-th access-request Put of the stream"; 0 turns that part off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchDisorder {
    /// This Put is sent twice in a row.
    pub duplicate_every: u64,
    /// This Put is held back for `reorder_delay` while later events pass.
    pub reorder_every: u64,
    pub reorder_delay: Duration,
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
    /// A newer event of the request was sent before this one.
    overtaken: bool,
    until: Instant,
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
                if !already_held && self.cfg.reorder_every > 0 && n.is_multiple_of(self.cfg.reorder_every) {
                    let until = Instant::now() + self.cfg.reorder_delay;
                    self.held.push(Held { id, event: ev, overtaken: false, until });
                    return out;
                }
                let twice = self.cfg.duplicate_every > 0 && n.is_multiple_of(self.cfg.duplicate_every);
                out.push((ev.clone(), Sent::InOrder));
                if twice {
                    out.push((ev, Sent::Duplicate));
                }
                for h in self.held.iter_mut().filter(|h| h.id == id) {
                    h.overtaken = true;
                }
            }
        }
        out
    }

    /// When the next held Put is due.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.until).min()
    }

    /// Held Puts whose time is up.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(proto::Event, Sent)> {
        self.release(|h| h.until <= now)
    }

    /// Takes the held Puts `which` selects; those a newer event overtook
    /// are stale.
    fn release(&mut self, which: impl Fn(&Held) -> bool) -> Vec<(proto::Event, Sent)> {
        let (out, keep): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held).into_iter().partition(&which);
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
        let delay = Duration::from_millis(300);
        let mut d = Disorder::new(WatchDisorder { duplicate_every: 0, reorder_every: 2, reorder_delay: delay });
        assert_eq!(d.on_event(put("a", 0)).len(), 1);
        assert!(d.on_event(put("a", 1)).is_empty(), "second Put held");
        // Newer events pass it: this request's and another's.
        assert_eq!(d.on_event(put("b", 0)).len(), 1);
        assert_eq!(d.on_event(put("a", 2)).iter().map(|(e, _)| reviews(e)).collect::<Vec<_>>(), vec![2]);
        let deadline = d.deadline().expect("held");
        assert!(d.due(deadline - Duration::from_millis(1)).is_empty());
        let out = d.due(deadline);
        assert_eq!(out.iter().map(|(e, s)| (reviews(e), *s)).collect::<Vec<_>>(), vec![(1, Sent::Stale)]);
        assert!(d.deadline().is_none());
        // Not overtaken by its own request: released in order.
        assert_eq!(d.on_event(put("b", 1)).len(), 1);
        assert!(d.on_event(put("c", 0)).is_empty(), "the sixth Put is held");
        assert_eq!(d.on_event(put("b", 2)).len(), 1);
        let deadline = d.deadline().expect("held");
        assert_eq!(d.due(deadline).iter().map(|(_, s)| *s).collect::<Vec<_>>(), vec![Sent::InOrder]);
    }

    #[test]
    fn duplicates_and_deletes() {
        let mut d = Disorder::new(WatchDisorder { duplicate_every: 1, ..Default::default() });
        let out = d.on_event(put("a", 0));
        assert_eq!(out.iter().map(|(_, s)| *s).collect::<Vec<_>>(), vec![Sent::InOrder, Sent::Duplicate]);

        let mut d = Disorder::new(WatchDisorder { reorder_every: 1, reorder_delay: Duration::from_secs(60), ..Default::default() });
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
        assert!(d.deadline().is_none());
    }
}
