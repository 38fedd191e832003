//! Reviews on behalf of a mapped Teleport user, and finding that user: the
//! Teleport client against the simulator's users service and Auth's review
//! rules, over real mutual TLS.

use std::sync::Arc;
use std::time::Duration;

use teleport_plugin::identity::{Identity, parse_identity_file};
use teleport_plugin::model::RequestState;
use teleport_plugin::pb::types;
use teleport_plugin::teleport::{ChannelOptions, DirectDialer, ReviewError, TeleportClient};
use teleport_plugin_sim::access::{self, AccessRequestExt};
use teleport_plugin_sim::teleport::{SimConfig, TeleportSim};
use tonic::Status;

const TRAIT: &str = "slack_user_id";

/// A cluster where the plugin (`access-plugin`) may submit for anyone,
/// `bob` and `carol` may review `editor` requests, `alice` requests and may
/// review too (her own request is still off limits), `dave` has no review
/// rights and `erin` reviews `auditor` requests only.
async fn cluster() -> (TeleportSim, Arc<TeleportClient>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = TeleportSim::start(SimConfig::default()).await.expect("simulator starts");
    sim.set_submit_for_users("plugin-review", &["*"]);
    sim.put_user("access-plugin", &["plugin-review"], &[]);
    sim.allow_review("reviewer", &["editor"]);
    sim.allow_review("auditor-reviewer", &["auditor"]);
    sim.set_role("dev", &["dev"]);
    sim.put_user("alice", &["reviewer"], &[(TRAIT, &["U1"])]);
    sim.put_user("bob", &["reviewer"], &[(TRAIT, &["U2"]), ("team", &["sre"])]);
    sim.put_user("carol", &["reviewer"], &[(TRAIT, &["U3"]), ("team", &["sre"])]);
    sim.put_user("dave", &["dev"], &[(TRAIT, &["U4"])]);
    sim.put_user("erin", &["auditor-reviewer"], &[(TRAIT, &["U5"])]);
    let dialer = Arc::new(DirectDialer { addr: sim.addr().to_string() });
    let (client, _) = TeleportClient::connect(dialer, identity(&sim), ChannelOptions::default()).await.expect("connects");
    (sim, Arc::new(client))
}

/// A fresh identity for the plugin user (`access-plugin`), valid for an hour.
fn identity(sim: &TeleportSim) -> Arc<Identity> {
    let issued = sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap();
    Arc::new(parse_identity_file(issued.identity_file.as_bytes()).unwrap())
}

fn names(users: &[teleport_plugin::teleport::User]) -> Vec<&str> {
    users.iter().map(|u| u.name.as_str()).collect()
}

// ---- users ---------------------------------------------------------------

#[tokio::test]
async fn users_with_trait_match_one_none_or_several() {
    let (sim, c) = cluster().await;
    let found = c.users_with_trait(TRAIT, "U2").await.unwrap();
    assert_eq!(names(&found), ["bob"]);
    assert_eq!(found[0].roles, ["reviewer"]);
    assert_eq!(found[0].traits["team"], ["sre"]);
    assert!(c.users_with_trait(TRAIT, "U9").await.unwrap().is_empty());
    assert!(c.users_with_trait(TRAIT, "U").await.unwrap().is_empty(), "exact values only");
    assert_eq!(names(&c.users_with_trait("team", "sre").await.unwrap()), ["bob", "carol"]);
    let before = sim.calls("UsersService/ListUsers");
    assert!(c.users_with_trait(TRAIT, "").await.unwrap().is_empty());
    assert!(c.users_with_trait("", "U2").await.unwrap().is_empty());
    assert_eq!(sim.calls("UsersService/ListUsers"), before, "nothing to look for: no call");
}

#[tokio::test]
async fn a_server_ignoring_the_trait_filter_returns_everyone_but_only_matches_count() {
    let (sim, c) = cluster().await;
    sim.ignore_user_trait_filter(true);
    assert_eq!(names(&c.users_with_trait(TRAIT, "U2").await.unwrap()), ["bob"]);
    assert!(c.users_with_trait(TRAIT, "U9").await.unwrap().is_empty(), "not the only user, not anyone");
}

#[tokio::test]
async fn users_with_trait_page_through_every_match() {
    let (sim, c) = cluster().await;
    for i in 0..1001 {
        sim.put_user(&format!("user-{i:04}"), &[], &[("group", &["g"])]);
    }
    let found = c.users_with_trait("group", "g").await.unwrap();
    assert_eq!(found.len(), 1001);
    assert_eq!(found[1000].name, "user-1000");
    assert_eq!(sim.calls("UsersService/ListUsers"), 3, "pages of 500");

    // An old server pages through everyone; matches are still all found.
    sim.ignore_user_trait_filter(true);
    let found = c.users_with_trait("group", "g").await.unwrap();
    assert_eq!(found.len(), 1001);
}

#[tokio::test]
async fn get_user_falls_back_to_the_legacy_call() {
    let (sim, c) = cluster().await;
    let bob = c.get_user("bob").await.unwrap().expect("bob exists");
    assert_eq!((bob.name.as_str(), bob.roles.as_slice()), ("bob", &["reviewer".to_string()][..]));
    assert_eq!(c.get_user("nobody").await.unwrap(), None);
    assert_eq!(sim.calls("GetUser"), 0);

    sim.set_unimplemented("UsersService/GetUser", true);
    assert_eq!(c.get_user("bob").await.unwrap(), Some(bob));
    assert_eq!(c.get_user("nobody").await.unwrap(), None);
    assert_eq!(sim.calls("GetUser"), 2, "legacy AuthService/GetUser");

    sim.deny_user_reads(true);
    let err = c.get_user("bob").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "a missing permission is not an absent user");
}

// ---- reviews -------------------------------------------------------------

#[tokio::test]
async fn an_approval_on_behalf_resolves_a_default_request() {
    let (sim, c) = cluster().await;
    let req = sim.request("alice", &["editor"], "deploy");
    let after = c.submit_review_on_behalf(req.id(), "bob", true, "Reviewed in Slack by U2").await.unwrap();
    assert_eq!(after.state, RequestState::Approved);
    assert_eq!(after.approvals_needed(), 0);
    assert_eq!(after.reviews.len(), 1);
    assert_eq!(after.reviews[0].author, "bob");
    assert_eq!(after.resolve_reason, "Reviewed in Slack by U2");
    let stored = sim.get_request(req.id()).unwrap();
    let review = &stored.spec.as_ref().unwrap().reviews[0];
    assert!(review.submitted_on_behalf_of_author);
    assert_eq!(review.submitted_by, "access-plugin", "Auth records the plugin");
    assert!(review.created.is_some());
}

#[tokio::test]
async fn a_denial_on_behalf_denies() {
    let (sim, c) = cluster().await;
    let req = sim.request("alice", &["editor"], "");
    let after = c.submit_review_on_behalf(req.id(), "carol", false, "no").await.unwrap();
    assert_eq!(after.state, RequestState::Denied);
}

#[tokio::test]
async fn the_review_reaches_watchers() {
    let (sim, c) = cluster().await;
    let req = sim.request("alice", &["editor"], "");
    let mut stream = c.connection().watch(&["access_request"]).await.unwrap();
    let init = stream.message().await.unwrap().unwrap();
    assert_eq!(init.r#type, 0, "INIT first");
    c.submit_review_on_behalf(req.id(), "bob", true, "").await.unwrap();
    let put = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.unwrap().unwrap().unwrap();
    let Some(teleport_plugin::pb::proto::event::Resource::AccessRequest(r)) = put.resource else { panic!("not a request put") };
    assert_eq!(r.spec.unwrap().reviews[0].author, "bob");
}

#[tokio::test]
async fn the_requesters_own_request_is_not_reviewable() {
    let (sim, c) = cluster().await;
    let req = sim.request("alice", &["editor"], "");
    let err = c.submit_review_on_behalf(req.id(), "alice", true, "").await.unwrap_err();
    assert_eq!(err, ReviewError::NotPermitted(format!("user \"alice\" cannot review request \"{}\"", req.id())));
    assert_eq!(sim.get_request(req.id()).unwrap().state(), types_pending());
}

#[tokio::test]
async fn authors_without_the_right_to_review_are_refused() {
    let (sim, c) = cluster().await;
    let req = sim.request("alice", &["editor"], "");
    let err = c.submit_review_on_behalf(req.id(), "dave", true, "").await.unwrap_err();
    assert_eq!(err, ReviewError::NotPermitted("user \"dave\" cannot submit reviews".into()));
    let err = c.submit_review_on_behalf(req.id(), "erin", true, "").await.unwrap_err();
    assert!(matches!(&err, ReviewError::NotPermitted(m) if m.contains("cannot review request")), "{err:?}");
    // Auth's default threshold lets one review decide; none of these counted.
    assert!(sim.get_request(req.id()).unwrap().spec.unwrap().reviews.is_empty());
}

#[tokio::test]
async fn a_second_review_by_the_same_author_is_refused() {
    let (sim, c) = cluster().await;
    let req = sim.create_request(two_approvals());
    c.submit_review_on_behalf(req.id(), "bob", true, "").await.unwrap();
    let err = c.submit_review_on_behalf(req.id(), "bob", false, "changed my mind").await.unwrap_err();
    assert_eq!(err, ReviewError::AlreadyReviewed);
}

#[tokio::test]
async fn a_resolved_request_takes_no_more_reviews() {
    let (sim, c) = cluster().await;
    let req = sim.request("alice", &["editor"], "");
    c.submit_review_on_behalf(req.id(), "bob", true, "").await.unwrap();
    let err = c.submit_review_on_behalf(req.id(), "carol", false, "").await.unwrap_err();
    assert_eq!(err, ReviewError::AlreadyResolved);
    let denied = sim.request("alice", &["editor"], "");
    sim.deny(denied.id(), "by an admin");
    assert_eq!(c.submit_review_on_behalf(denied.id(), "bob", true, "").await.unwrap_err(), ReviewError::AlreadyResolved);
}

#[tokio::test]
async fn an_expired_or_unknown_request_is_not_found() {
    let (sim, c) = cluster().await;
    let req = sim.request("alice", &["editor"], "");
    sim.expire(req.id());
    assert_eq!(c.submit_review_on_behalf(req.id(), "bob", true, "").await.unwrap_err(), ReviewError::NotFound);
    assert_eq!(c.submit_review_on_behalf("no-such-id", "bob", true, "").await.unwrap_err(), ReviewError::NotFound);
}

#[tokio::test]
async fn the_plugin_needs_a_submit_for_users_rule_for_the_author() {
    let (sim, c) = cluster().await;
    sim.set_submit_for_users("plugin-review", &["bob"]);
    let req = sim.create_request(two_approvals());
    let err = c.submit_review_on_behalf(req.id(), "carol", true, "").await.unwrap_err();
    assert_eq!(
        err,
        ReviewError::OnBehalfUnsupported("user \"access-plugin\" cannot submit reviews on behalf of \"carol\"".into())
    );
    c.submit_review_on_behalf(req.id(), "bob", true, "").await.expect("bob is covered by the rule");

    sim.set_submit_for_users("plugin-review", &[]);
    let err = c.submit_review_on_behalf(req.id(), "carol", true, "").await.unwrap_err();
    assert!(matches!(err, ReviewError::OnBehalfUnsupported(_)), "{err:?}");
}

#[tokio::test]
async fn a_server_without_on_behalf_reviews_refuses_them_as_the_plugins_own() {
    let (sim, c) = cluster().await;
    sim.without_on_behalf_reviews(true);
    let req = sim.request("alice", &["editor"], "");
    let err = c.submit_review_on_behalf(req.id(), "bob", true, "").await.unwrap_err();
    assert_eq!(
        err,
        ReviewError::OnBehalfUnsupported("user \"access-plugin\" cannot submit reviews on behalf of \"bob\"".into())
    );
    assert!(err.to_string().contains("submit_for_users"), "{err}");
    assert_eq!(sim.get_request(req.id()).unwrap().state(), types_pending());
}

#[tokio::test]
async fn two_approvals_needed_leave_the_first_pending() {
    let (sim, c) = cluster().await;
    let req = sim.create_request(two_approvals());
    let first = c.submit_review_on_behalf(req.id(), "bob", true, "").await.unwrap();
    assert_eq!(first.state, RequestState::Pending);
    assert_eq!(first.approvals_needed(), 1);
    assert_eq!(first.review_thresholds["bob"], [0]);
    let second = c.submit_review_on_behalf(req.id(), "carol", true, "second").await.unwrap();
    assert_eq!(second.state, RequestState::Approved);
    assert_eq!(second.resolve_reason, "second");
    assert_eq!(second.approvals_needed(), 0);
}

#[tokio::test]
async fn a_review_outside_every_threshold_filter_moves_nothing() {
    let (sim, c) = cluster().await;
    let r = access::with_thresholds(
        access::new_request("alice", &["editor"]),
        &[("super", r#"contains(reviewer.roles, "super")"#, 1, 1)],
        &[("editor", &[&[0]])],
    );
    let req = sim.create_request(r);
    let after = c.submit_review_on_behalf(req.id(), "bob", true, "").await.unwrap();
    assert_eq!(after.state, RequestState::Pending);
    assert_eq!(after.approvals_needed(), 1);
    assert!(after.review_thresholds["bob"].is_empty());
}

#[tokio::test]
async fn concurrent_writes_are_retried_once() {
    let (sim, c) = cluster().await;
    let busy = || Status::failed_precondition("too many concurrent writes to access request r, try again later");
    let req = sim.request("alice", &["editor"], "");
    sim.fail_next("SubmitAccessReview", busy());
    let after = c.submit_review_on_behalf(req.id(), "bob", true, "").await.unwrap();
    assert_eq!(after.state, RequestState::Approved);
    assert_eq!(sim.calls("SubmitAccessReview"), 2);

    let req = sim.request("alice", &["editor"], "");
    sim.fail_next("SubmitAccessReview", busy());
    sim.fail_next("SubmitAccessReview", busy());
    assert_eq!(c.submit_review_on_behalf(req.id(), "bob", true, "").await.unwrap_err(), ReviewError::Busy);
    assert_eq!(sim.calls("SubmitAccessReview"), 4, "one retry, not more");
}

#[tokio::test]
async fn an_unreachable_auth_is_told_apart() {
    let (sim, c) = cluster().await;
    let req = sim.request("alice", &["editor"], "");
    sim.fail_next("SubmitAccessReview", Status::unavailable("connection reset"));
    let err = c.submit_review_on_behalf(req.id(), "bob", true, "").await.unwrap_err();
    assert!(matches!(err, ReviewError::Unreachable(_)), "{err:?}");
}

// ---- one request by id ---------------------------------------------------

#[tokio::test]
async fn get_access_request_by_id_with_its_thresholds() {
    let (sim, c) = cluster().await;
    let other = sim.request("bob", &["editor"], "");
    let req = sim.create_request(two_approvals());
    let got = c.get_access_request(req.id()).await.unwrap().expect("exists");
    assert_eq!(got.id, req.id());
    assert_eq!(got.thresholds[0].approve, 2);
    assert_eq!(got.role_thresholds["editor"], vec![vec![0]]);
    assert_eq!(got.approvals_needed(), 2);
    sim.expire(req.id());
    assert_eq!(c.get_access_request(req.id()).await.unwrap(), None);

    sim.set_unimplemented("ListAccessRequests", true);
    let got = c.get_access_request(other.id()).await.unwrap().expect("found on the stream");
    assert_eq!(got.user, "bob");
    assert_eq!(c.get_access_request(req.id()).await.unwrap(), None);
    assert_eq!(sim.calls("GetAccessRequestsV2"), 2);
}

fn two_approvals() -> types::AccessRequestV3 {
    access::with_thresholds(access::new_request("alice", &["editor"]), &[("two", "", 2, 1)], &[("editor", &[&[0]])])
}

fn types_pending() -> types::RequestState {
    types::RequestState::Pending
}
