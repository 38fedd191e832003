//! Table tests of the decision core: (snapshot, record) → next step.

use super::*;
use crate::model::Review;
use crate::teleport::plugin_data::MessageRef;

const SLACK: Capabilities = Capabilities { threads: true, reviews_on_card: false, reactions: true };
const DISCORD: Capabilities = Capabilities { threads: false, reviews_on_card: true, reactions: false };
const NOW: u64 = 1_000_000;

fn me() -> Me {
    Me { instance: "pod-a".into(), epoch: "e1".into() }
}

fn req(state: RequestState, reviews: usize) -> Snapshot {
    let mut r = AccessRequest::new_pending("req-1", "alice@example.com", vec!["editor".into()]);
    r.state = state;
    for i in 0..reviews {
        r.reviews.push(Review {
            author: format!("rev{i}"),
            roles: vec![],
            proposed_state: RequestState::Approved,
            reason: String::new(),
            created: None,
        });
    }
    Snapshot::Live(r)
}

fn msg(n: usize) -> MessageRef {
    MessageRef { channel_id: format!("C{n}"), message_id: format!("{n}.0") }
}

/// A record owned by `owner` (instance, epoch) with `pending` targets and `posted` messages.
fn rec(owner: (&str, &str), pending: &[&str], posted: usize) -> Record {
    let mut r = Record::default();
    r.progress.owner = owner.0.into();
    r.progress.epoch = owner.1.into();
    r.progress.lease_until = if owner.0.is_empty() { 0 } else { NOW + 30_000 };
    r.progress.pending = pending.iter().map(|s| s.to_string()).collect();
    r.data.messages = (0..posted).map(msg).collect();
    r
}

fn rendered(mut r: Record, snap: &Snapshot) -> Record {
    r.progress.rendered = fingerprint(status_of(snap, &r), review_count(snap, &r), resolve_reason(snap, &r));
    r
}

fn step(snap: &Snapshot, record: Option<&Record>, caps: Capabilities, uncertain: &[&str]) -> Step {
    let uncertain: HashSet<String> = uncertain.iter().map(|s| s.to_string()).collect();
    next_step(&Input { snapshot: snap, record, me: &me(), now_ms: NOW, caps, uncertain: &uncertain })
}

#[test]
fn without_a_record() {
    let cases = [
        (req(RequestState::Pending, 0), Step::Claim),
        (req(RequestState::Pending, 2), Step::Claim),
        (req(RequestState::Approved, 0), Step::Skip("resolved before it was posted")),
        (Snapshot::Deleted("req-1".into()), Step::Skip("deleted before it was posted")),
    ];
    for (snap, want) in cases {
        assert_eq!(step(&snap, None, SLACK, &[]), want, "{snap:?}");
    }
}

#[test]
fn posting_follows_the_pending_list() {
    let pending = req(RequestState::Pending, 0);
    let mine = rec(("pod-a", "e1"), &["#a", "#b"], 0);
    assert_eq!(step(&pending, Some(&mine), SLACK, &[]), Step::Post { target: "#a".into(), lookup_first: false });
    // An uncertain earlier attempt is looked up before posting again.
    assert_eq!(step(&pending, Some(&mine), SLACK, &["#a"]), Step::Post { target: "#a".into(), lookup_first: true });
}

#[test]
fn claims_of_others_are_respected_until_their_lease_ends() {
    let pending = req(RequestState::Pending, 0);
    let theirs = rec(("pod-b", "x"), &["#a"], 0);
    assert_eq!(step(&pending, Some(&theirs), SLACK, &[]), Step::Wait { until_ms: NOW + 30_000 });
    let mut expired = theirs.clone();
    expired.progress.lease_until = NOW - 1;
    assert_eq!(step(&pending, Some(&expired), SLACK, &[]), Step::TakeOver);
    // Our own claim from a previous life is taken over at once.
    let old_self = rec(("pod-a", "e0"), &["#a"], 0);
    assert_eq!(step(&pending, Some(&old_self), SLACK, &[]), Step::TakeOver);
    // A released claim is free.
    let released = rec(("", ""), &["#a"], 0);
    assert_eq!(step(&pending, Some(&released), SLACK, &[]), Step::TakeOver);
}

#[test]
fn idempotent_steps_do_not_wait_for_the_claim() {
    let approved = req(RequestState::Approved, 0);
    let theirs = rec(("pod-b", "x"), &[], 1);
    assert_eq!(step(&approved, Some(&theirs), SLACK, &[]), Step::MarkResolved { resolution: Resolution::Approved });
    let mut resolved = theirs.clone();
    resolved.data.resolution = Resolution::Approved;
    assert!(matches!(step(&approved, Some(&resolved), SLACK, &[]), Step::UpdateAll { .. }));
}

#[test]
fn resolution_is_recorded_before_pending_posts_and_drops_them() {
    let denied = req(RequestState::Denied, 0);
    let mine = rec(("pod-a", "e1"), &["#a"], 1);
    assert_eq!(step(&denied, Some(&mine), SLACK, &[]), Step::MarkResolved { resolution: Resolution::Denied });
    let mut after = mine.clone();
    after.data.resolution = Resolution::Denied;
    // The pending post is no longer owed once resolved.
    assert!(matches!(step(&denied, Some(&after), SLACK, &[]), Step::UpdateAll { .. }));
}

#[test]
fn deletion_expires_an_open_request_but_keeps_a_resolution() {
    let deleted = Snapshot::Deleted("req-1".into());
    let open = rec(("", ""), &[], 1);
    assert_eq!(step(&deleted, Some(&open), SLACK, &[]), Step::MarkResolved { resolution: Resolution::Expired });
    let mut approved = open.clone();
    approved.data.resolution = Resolution::Approved;
    approved.progress.reacted = true;
    approved.progress.notice = Notice::Sent;
    let approved = rendered(approved, &deleted);
    assert_eq!(step(&deleted, Some(&approved), SLACK, &[]), Step::Done);
}

#[test]
fn reviews_become_thread_replies_on_every_card() {
    let reviewed = req(RequestState::Pending, 1);
    let mut r = rec(("pod-a", "e1"), &[], 2);
    assert_eq!(step(&reviewed, Some(&r), SLACK, &[]), Step::Reply { review: 0, message: 0, lookup_first: false });
    r.progress.replied = vec![0];
    assert_eq!(step(&reviewed, Some(&r), SLACK, &[&reply_key(0, 1)]), Step::Reply { review: 0, message: 1, lookup_first: true });
    r.progress.replied = vec![0, 1];
    assert_eq!(step(&reviewed, Some(&r), SLACK, &[]), Step::FinishReplies);
    r.progress.replied.clear();
    r.data.reviews_count = 1;
    assert!(matches!(step(&reviewed, Some(&r), SLACK, &[]), Step::UpdateAll { .. }));
    let r = rendered(r, &reviewed);
    assert_eq!(step(&reviewed, Some(&r), SLACK, &[]), Step::Release);
}

#[test]
fn chats_without_threads_show_reviews_on_the_card() {
    let reviewed = req(RequestState::Pending, 1);
    let r = rec(("", ""), &[], 1);
    assert!(matches!(step(&reviewed, Some(&r), DISCORD, &[]), Step::UpdateAll { .. }));
    let r = rendered(r, &reviewed);
    assert_eq!(step(&reviewed, Some(&r), DISCORD, &[]), Step::FinishReplies);
}

#[test]
fn resolution_adds_reactions_then_notifies_the_requester() {
    let approved = req(RequestState::Approved, 0);
    let mut r = rec(("pod-a", "e1"), &[], 1);
    r.data.resolution = Resolution::Approved;
    let mut r = rendered(r, &approved);
    assert_eq!(step(&approved, Some(&r), SLACK, &[]), Step::React);
    r.progress.reacted = true;
    assert_eq!(step(&approved, Some(&r), SLACK, &[]), Step::NotifyRequester);
    r.progress.notice = Notice::Sent;
    assert_eq!(step(&approved, Some(&r), SLACK, &[]), Step::Release);
    r.progress.owner.clear();
    assert_eq!(step(&approved, Some(&r), SLACK, &[]), Step::Done);
    // Promoted requests get no ✅/❌ but still a notice.
    let promoted = req(RequestState::Promoted, 0);
    let mut p = rec(("pod-a", "e1"), &[], 1);
    p.data.resolution = Resolution::Promoted;
    let p = rendered(p, &promoted);
    assert_eq!(step(&promoted, Some(&p), SLACK, &[]), Step::NotifyRequester);
}

#[test]
fn the_notice_needs_the_claim() {
    let approved = req(RequestState::Approved, 0);
    let mut r = rec(("pod-b", "x"), &[], 1);
    r.data.resolution = Resolution::Approved;
    r.progress.reacted = true;
    let r = rendered(r, &approved);
    assert_eq!(step(&approved, Some(&r), SLACK, &[]), Step::Wait { until_ms: NOW + 30_000 });
}

#[test]
fn a_stale_pending_snapshot_never_undoes_a_resolution() {
    let stale = req(RequestState::Pending, 0);
    let mut r = rec(("", ""), &[], 1);
    r.data.resolution = Resolution::Approved;
    r.progress.reacted = true;
    r.progress.notice = Notice::Sent;
    let r = rendered(r, &req(RequestState::Approved, 0));
    assert_eq!(step(&stale, Some(&r), SLACK, &[]), Step::Done);
}

#[test]
fn progress_round_trips_through_plugin_data_keys() {
    let p = Progress {
        owner: "pod-a".into(),
        epoch: "e1".into(),
        lease_until: 42,
        since: 7,
        pending: vec!["#a,b".into(), "U1".into()],
        rendered: "PENDING:0:x".into(),
        replied: vec![0, 2],
        reacted: true,
        notice: Notice::Skipped,
        failed: vec!["#gone".into()],
    };
    let mut extra = BTreeMap::new();
    p.write(&mut extra);
    assert_eq!(Progress::read(&extra), p);
    let mut empty = BTreeMap::new();
    Progress::default().write(&mut empty);
    assert!(empty.values().all(String::is_empty), "defaults delete their keys");
}
