//! The review desk against the Teleport simulator's users and review rules,
//! with the whole plugin running (its cards and plugin data are what a click
//! is checked against): every outcome a clicker can get, and that a click
//! decided twice makes one review.

mod common;

use std::sync::Arc;
use std::time::Duration;

use teleport_plugin::app::{Extras, Running, launch};
use teleport_plugin::chat::Chat;
use teleport_plugin::chat::click::{Click, Decision, Outcome, SubmittedState};
use teleport_plugin::chat::console::ConsoleChat;
use teleport_plugin::config::ReviewMapping;
use teleport_plugin::review::{ChatDesk, Desk};
use teleport_plugin::teleport::plugin_data::{MessageRef, RequestData};
use teleport_plugin_sim::access::{self, AccessRequestExt};
use teleport_plugin_sim::teleport::TeleportSim;
use tonic::Status;

use common::{Env, eventually};

const TRAIT: &str = "chat_id";
const CONSOLE: &str = "[console]\n[role_to_recipients]\n\"*\" = \"#access\"\n";

struct Setup {
    env: Env,
    running: Running,
    desk: Desk,
}

/// The plugin may submit for anyone; bob and carol review `editor`
/// requests, alice requests (and may review, not her own), dave may not
/// review at all.
async fn setup() -> Setup {
    let env = Env::new().await;
    let sim = &env.sim;
    common::review_rules(sim, &[("alice", TRAIT, "U1"), ("bob", TRAIT, "U2"), ("carol", TRAIT, "U3")]);
    sim.set_role("dev", &["dev"]);
    sim.put_user("dave", &["dev"], &[(TRAIT, &["U4"])]);
    let console: Arc<dyn Chat> = Arc::new(ConsoleChat::buffered().0);
    let running = launch(&env.config(CONSOLE), vec![console.clone()], Extras::default()).await.unwrap();
    assert!(running.ready(Duration::from_secs(10)).await);
    let desk = Desk::new(
        running.client.clone(),
        vec![ChatDesk {
            chat: console,
            mapping: ReviewMapping { user_id_trait: TRAIT.into(), allow_email_username_match: false, known_users: Default::default() },
            display: "console",
        }],
        running.metrics.clone(),
    );
    Setup { env, running, desk }
}

/// The card the plugin posted for `id`, once it is in plugin data.
async fn card(sim: &TeleportSim, id: &str) -> MessageRef {
    let mut found = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            found = sim.plugin_data(id, "console").map(|d| RequestData::decode(&d)).and_then(|d| d.messages.first().cloned());
            found.is_some()
        })
        .await,
        "no card for {id}"
    );
    found.unwrap()
}

fn click(user: &str, id: &str, decision: Decision, card: &MessageRef) -> Click {
    Click {
        chat: "console",
        user_id: user.into(),
        user_name: format!("{user}-handle"),
        request_id: id.into(),
        decision,
        message: Some(card.clone()),
        dedupe_key: format!("{user}:{}:{}:{id}", card.message_id, decision.as_str()),
    }
}

fn reviews(sim: &TeleportSim, id: &str) -> Vec<teleport_plugin::pb::types::AccessReview> {
    sim.get_request(id).unwrap().spec.unwrap().reviews
}

#[tokio::test]
async fn approve_and_deny_are_submitted_on_behalf_of_the_mapped_user() {
    let s = setup().await;
    let sim = &s.env.sim;
    let r = sim.request("alice", &["editor"], "hotfix");
    let c = card(sim, r.id()).await;
    let outcome = s.desk.handle(click("U2", r.id(), Decision::Approve, &c)).await;
    assert_eq!(outcome, Outcome::Submitted { decision: Decision::Approve, state: SubmittedState::Approved });
    let got = reviews(sim, r.id());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].author, "bob");
    assert!(got[0].submitted_on_behalf_of_author, "the on-behalf flag");
    assert_eq!(got[0].reason, "Reviewed in console by @U2-handle");
    assert!(outcome.text(r.id()).contains("now approved"));

    let d = sim.request("alice", &["editor"], "again");
    let c = card(sim, d.id()).await;
    let outcome = s.desk.handle(click("U3", d.id(), Decision::Deny, &c)).await;
    assert_eq!(outcome, Outcome::Submitted { decision: Decision::Deny, state: SubmittedState::Denied });
    assert_eq!(reviews(sim, d.id())[0].author, "carol");
    let text = teleport_plugin::metrics::encode(&s.running.registry);
    assert!(text.contains("teleport_plugin_reviews_submitted_total{chat=\"console\"} 2"), "{text}");
}

#[tokio::test]
async fn a_click_decided_twice_makes_one_review() {
    let s = setup().await;
    let sim = &s.env.sim;
    // Slow Auth down so both deliveries are in flight together.
    let r = sim.request("alice", &["editor"], "hotfix");
    let c = card(sim, r.id()).await;
    sim.set_delay(Duration::from_millis(100));
    let first = click("U2", r.id(), Decision::Approve, &c);
    let (a, b) = tokio::join!(s.desk.handle(first.clone()), s.desk.handle(first.clone()));
    sim.set_delay(Duration::ZERO);
    assert_eq!(a, b);
    assert!(matches!(a, Outcome::Submitted { .. }));
    // A redelivery after the fact gets the same answer, still one review.
    assert_eq!(s.desk.handle(first).await, a);
    assert_eq!(reviews(sim, r.id()).len(), 1);
    assert_eq!(sim.calls("SubmitAccessReview"), 1);
}

#[tokio::test]
async fn several_approvals_leave_it_pending_then_approve_it() {
    let s = setup().await;
    let sim = &s.env.sim;
    let req = access::with_thresholds(access::new_request("alice", &["editor"]), &[("two", "", 2, 1)], &[("editor", &[&[0]])]);
    let r = sim.create_request(req);
    let c = card(sim, r.id()).await;
    let first = s.desk.handle(click("U2", r.id(), Decision::Approve, &c)).await;
    assert_eq!(first, Outcome::Submitted { decision: Decision::Approve, state: SubmittedState::Pending { approvals_needed: 1 } });
    assert!(first.text(r.id()).contains("1 more approval needed"), "{}", first.text(r.id()));
    // The same reviewer again, with the other button: Auth's "already reviewed".
    assert_eq!(s.desk.handle(click("U2", r.id(), Decision::Deny, &c)).await, Outcome::AlreadyReviewed);
    let second = s.desk.handle(click("U3", r.id(), Decision::Approve, &c)).await;
    assert_eq!(second, Outcome::Submitted { decision: Decision::Approve, state: SubmittedState::Approved });
    assert_eq!(reviews(sim, r.id()).len(), 2);
}

#[tokio::test]
async fn refusals_submit_nothing_and_say_why() {
    let s = setup().await;
    let sim = &s.env.sim;
    let r = sim.request("alice", &["editor"], "hotfix");
    let c = card(sim, r.id()).await;

    assert_eq!(s.desk.handle(click("U1", r.id(), Decision::Approve, &c)).await, Outcome::OwnRequest);
    assert_eq!(s.desk.handle(click("U4", r.id(), Decision::Approve, &c)).await, Outcome::NotPermitted("dave".into()));
    let Outcome::NotMapped(why) = s.desk.handle(click("U9", r.id(), Decision::Approve, &c)).await else { panic!() };
    assert!(why.contains("\"chat_id\" = U9"), "{why}");
    sim.put_user("mallory", &["reviewer"], &[(TRAIT, &["U3"])]);
    let Outcome::Ambiguous(why) = s.desk.handle(click("U3", r.id(), Decision::Approve, &c)).await else { panic!() };
    assert!(why.contains("carol") && why.contains("mallory"), "{why}");

    // A button of another request's card.
    let other = sim.request("alice", &["editor"], "other");
    let other_card = card(sim, other.id()).await;
    assert_eq!(s.desk.handle(click("U2", r.id(), Decision::Approve, &other_card)).await, Outcome::WrongCard);
    assert!(reviews(sim, r.id()).is_empty(), "nothing was submitted");
    let text = teleport_plugin::metrics::encode(&s.running.registry);
    for reason in ["own_request", "not_permitted", "not_mapped", "ambiguous", "wrong_card"] {
        assert!(text.contains(&format!("teleport_plugin_reviews_refused_total{{chat=\"console\",reason=\"{reason}\"}} 1")), "{reason}: {text}");
    }
}

#[tokio::test]
async fn resolved_expired_and_long_term_requests_are_refused() {
    let s = setup().await;
    let sim = &s.env.sim;
    let denied = sim.request("alice", &["editor"], "a");
    let c1 = card(sim, denied.id()).await;
    sim.deny(denied.id(), "no");
    assert_eq!(s.desk.handle(click("U2", denied.id(), Decision::Approve, &c1)).await, Outcome::AlreadyResolved);
    let expired = sim.request("alice", &["editor"], "b");
    let c2 = card(sim, expired.id()).await;
    sim.expire(expired.id());
    assert_eq!(s.desk.handle(click("U2", expired.id(), Decision::Approve, &c2)).await, Outcome::AlreadyResolved);
    let mut lt = access::new_request("alice", &["editor"]);
    lt.spec_mut().request_kind = teleport_plugin::pb::types::AccessRequestKind::LongTerm as i32;
    let lt = sim.create_request(lt);
    let c3 = card(sim, lt.id()).await;
    assert_eq!(s.desk.handle(click("U2", lt.id(), Decision::Approve, &c3)).await, Outcome::LongTerm);
    assert!(reviews(sim, lt.id()).is_empty());
}

#[tokio::test]
async fn teleport_unreachable_can_be_clicked_again() {
    let s = setup().await;
    let sim = &s.env.sim;
    let r = sim.request("alice", &["editor"], "hotfix");
    let c = card(sim, r.id()).await;
    sim.fail_next("ListAccessRequests", Status::unavailable("connection refused"));
    let k = click("U2", r.id(), Decision::Approve, &c);
    let Outcome::Retry(why) = s.desk.handle(k.clone()).await else { panic!("expected a retry") };
    assert!(why.contains("connection refused"), "{why}");
    // Not remembered: the same click again goes through.
    assert!(matches!(s.desk.handle(k).await, Outcome::Submitted { .. }));
}

/// Auth applies the review, then the connection dies before the answer:
/// the clicker is told the review went in (it did), not to try again, and a
/// second click does not add another.
#[tokio::test]
async fn a_review_applied_before_the_connection_died_is_reported_submitted() {
    let s = setup().await;
    let sim = &s.env.sim;
    let r = sim.request("alice", &["editor"], "hotfix");
    let c = card(sim, r.id()).await;
    sim.cut_after_apply("SubmitAccessReview", 1);
    let outcome = s.desk.handle(click("U2", r.id(), Decision::Approve, &c)).await;
    assert_eq!(sim.cut_calls("SubmitAccessReview"), 1, "the review was applied and its answer lost");
    assert_eq!(outcome, Outcome::Submitted { decision: Decision::Approve, state: SubmittedState::Approved });
    assert_eq!(reviews(sim, r.id()).len(), 1);
    // A new click (not a redelivery of the first) is refused: approved.
    let mut second = click("U2", r.id(), Decision::Approve, &c);
    second.dedupe_key.push_str(":again");
    assert_eq!(s.desk.handle(second).await, Outcome::AlreadyResolved);
    assert_eq!(reviews(sim, r.id()).len(), 1, "one review");
}

#[tokio::test]
async fn old_servers_are_handled() {
    let s = setup().await;
    let sim = &s.env.sim;
    // A server that ignores the trait filter returns every user: only the
    // real match counts.
    sim.ignore_user_trait_filter(true);
    let r = sim.request("alice", &["editor"], "hotfix");
    let c = card(sim, r.id()).await;
    assert!(matches!(s.desk.handle(click("U2", r.id(), Decision::Approve, &c)).await, Outcome::Submitted { .. }));
    assert_eq!(reviews(sim, r.id())[0].author, "bob");
    // A server without reviews on behalf of users.
    sim.without_on_behalf_reviews(true);
    let r2 = sim.request("alice", &["editor"], "again");
    let c2 = card(sim, r2.id()).await;
    let Outcome::Unavailable(why) = s.desk.handle(click("U3", r2.id(), Decision::Approve, &c2)).await else { panic!() };
    assert!(why.contains("submit_for_users") || why.contains("on behalf"), "{why}");
    assert!(reviews(sim, r2.id()).is_empty());
}
