//! `SubmitAccessReview` as Auth runs it, from the caller's identity down to
//! the state transition, with Auth's refusals (gRPC code and message text):
//!
//! 1. A proposed PROMOTED state is refused (promotion is Access List only).
//! 2. An empty author is the caller.
//! 3. The caller may write a review for another author only on the on-behalf
//!    path: `submitted_on_behalf_of_author` set (on a server that knows the
//!    field) and a `review_requests.submit_for_users` rule of the caller
//!    matching the author. Otherwise caller ≠ author is refused with
//!    `user "<caller>" cannot submit reviews on behalf of "<author>"`. On the
//!    on-behalf path the server records the caller in `SubmittedBy`; a
//!    `SubmittedBy` naming someone else is refused with the same text (the
//!    check upstream's first design had).
//! 4. An author without review allow rules: `user "<author>" cannot submit reviews`.
//! 5. Unknown (or expired, hence deleted) request: NOT_FOUND
//!    `cannot apply review to access request "<id>" (not found)`.
//! 6. The author may not review it (own request, or a requested role outside
//!    the author's `review_requests.roles`): `user "<author>" cannot review request "<id>"`.
//! 7. Auth's compatibility checks, in its order: state proposal, uninitialised
//!    thresholds, `user "<author>" has already reviewed this request`, role
//!    subselection and annotations (UNIMPLEMENTED), then a resolved request:
//!    `the access request has been already approved|denied|promoted`.
//! 8. The review gets the indexes of the thresholds whose filter matches the
//!    author, and the state follows the thresholds ([`resolution`]).
//!
//! Threshold filters: the empty filter (every reviewer) and
//! `contains(reviewer.roles, "<role>")` are evaluated; the access-request
//! builder refuses any other filter, so a test cannot rely on one silently.

use std::time::SystemTime;

use teleport_plugin_proto::types;
use tonic::Status;

use super::Store;
use super::users::glob_match;
use crate::access::{self, AccessRequestExt};

/// Applies `sub` for `caller` and returns the request after the review.
pub(super) fn submit(
    store: &mut Store,
    caller: &str,
    on_behalf_supported: bool,
    sub: types::AccessReviewSubmission,
    now: SystemTime,
) -> Result<types::AccessRequestV3, Status> {
    let mut review = sub.review.unwrap_or_default();
    if review.proposed_state == types::RequestState::Promoted as i32 {
        return Err(Status::invalid_argument("state promoted can be only set when promoting to access list"));
    }
    if review.author.is_empty() {
        review.author = caller.to_string();
    }
    let author = review.author.clone();
    if !on_behalf_supported {
        // An older server does not know fields 11 and 12: they never reach it.
        review.submitted_by.clear();
        review.submitted_on_behalf_of_author = false;
    }
    if review.submitted_on_behalf_of_author {
        if !review.submitted_by.is_empty() && review.submitted_by != caller {
            return Err(on_behalf_refused(caller, &review.submitted_by));
        }
        if !may_submit_for(store, caller, &author) {
            return Err(on_behalf_refused(caller, &author));
        }
        review.submitted_by = caller.to_string();
    } else if author != caller {
        return Err(on_behalf_refused(caller, &author));
    }

    let author_roles = store.users.get(&author).map(|u| u.roles.clone()).unwrap_or_default();
    if !store.users.contains_key(&author) {
        return Err(Status::not_found(format!("user {author:?} is not found")));
    }
    let reviewable: Vec<String> = author_roles
        .iter()
        .filter_map(|r| store.roles.get(r))
        .flat_map(|r| r.review_roles.iter().cloned())
        .collect();
    if reviewable.is_empty() {
        return Err(Status::permission_denied(format!("user {author:?} cannot submit reviews")));
    }

    let id = sub.request_id;
    let req = store
        .requests
        .get_mut(&id)
        .ok_or_else(|| Status::not_found(format!("cannot apply review to access request {id:?} (not found)")))?;
    let spec = req.spec.clone().unwrap_or_default();
    let may_review = spec.user != author && spec.roles.iter().all(|role| reviewable.iter().any(|p| glob_match(p, role)));
    if !may_review {
        return Err(Status::permission_denied(format!("user {author:?} cannot review request {id:?}")));
    }
    check_compat(&spec, &review)?;
    review.threshold_indexes = matching_thresholds(&spec.thresholds, &author_roles);
    if access::is_unset(review.created.as_ref()) {
        review.created = Some(access::timestamp(now));
    }
    match req.state() {
        types::RequestState::Approved => return Err(resolved("approved")),
        types::RequestState::Denied => return Err(resolved("denied")),
        types::RequestState::Promoted => return Err(resolved("promoted")),
        _ => {}
    }
    let spec = req.spec_mut();
    spec.reviews.push(review);
    if let Some((state, reason)) = resolution(spec) {
        spec.state = state as i32;
        spec.resolve_reason = reason;
        // A resolved request lives until its access expires.
        let access_expiry = spec.expires;
        req.metadata_mut().expires = access_expiry;
    }
    Ok(req.clone())
}

fn on_behalf_refused(caller: &str, author: &str) -> Status {
    Status::permission_denied(format!("user {caller:?} cannot submit reviews on behalf of {author:?}"))
}

fn resolved(state: &str) -> Status {
    Status::permission_denied(format!("the access request has been already {state}"))
}

/// Whether a `submit_for_users` rule of one of the caller's roles names the author.
fn may_submit_for(store: &Store, caller: &str, author: &str) -> bool {
    let Some(user) = store.users.get(caller) else { return false };
    user.roles
        .iter()
        .filter_map(|r| store.roles.get(r))
        .flat_map(|r| r.submit_for_users.iter())
        .any(|pattern| glob_match(pattern, author))
}

/// Auth's `checkReviewCompat`, in its order.
fn check_compat(spec: &types::AccessRequestSpecV3, review: &types::AccessReview) -> Result<(), Status> {
    let decisive = [types::RequestState::Approved as i32, types::RequestState::Denied as i32];
    if !decisive.contains(&review.proposed_state) {
        let name = types::RequestState::try_from(review.proposed_state).map(|s| s.as_str_name()).unwrap_or("UNKNOWN");
        return Err(Status::invalid_argument(format!("invalid state proposal: {name} (expected approval/denial)")));
    }
    if spec.thresholds.is_empty() {
        return Err(Status::invalid_argument("request is uninitialized or does not support reviews"));
    }
    if spec.reviews.iter().any(|r| r.author == review.author) {
        return Err(Status::permission_denied(format!("user {:?} has already reviewed this request", review.author)));
    }
    let mut roles = review.roles.clone();
    roles.sort();
    roles.dedup();
    if !roles.is_empty() && roles.len() != spec.role_threshold_mapping.len() {
        return Err(Status::unimplemented("role subselection is not yet supported in reviews, try omitting role list"));
    }
    if review.annotations.as_ref().is_some_and(|a| !a.values.is_empty()) {
        return Err(Status::unimplemented("annotations are not yet supported in reviews, try omitting annotations field"));
    }
    if let Some(role) = roles.iter().find(|r| !spec.role_threshold_mapping.contains_key(*r)) {
        return Err(Status::invalid_argument(format!("role {role:?} is not a member of this request")));
    }
    Ok(())
}

/// Indexes of the thresholds whose filter matches a reviewer with `roles`.
pub(super) fn matching_thresholds(thresholds: &[types::AccessReviewThreshold], roles: &[String]) -> Vec<u32> {
    thresholds
        .iter()
        .enumerate()
        .filter(|(_, t)| match access::threshold_filter_role(&t.filter) {
            Ok(None) => true,
            Ok(Some(role)) => roles.iter().any(|r| r == role),
            Err(_) => false,
        })
        .map(|(i, _)| i as u32)
        .collect()
}

/// Auth's `calculateReviewBasedResolution`: reviews are replayed in order,
/// each adding to the counters of the thresholds it matched. The first
/// threshold to reach its denial count denies; the request is approved once
/// every requested role has, in each of its threshold sets, one threshold
/// at its approval count. Otherwise it stays pending (`None`).
pub(super) fn resolution(spec: &types::AccessRequestSpecV3) -> Option<(types::RequestState, String)> {
    let thresholds = &spec.thresholds;
    let mut approvals = vec![0u32; thresholds.len()];
    let mut denials = vec![0u32; thresholds.len()];
    for review in &spec.reviews {
        let approve = review.proposed_state == types::RequestState::Approved as i32;
        for &i in &review.threshold_indexes {
            let Some(slot) = (if approve { approvals.get_mut(i as usize) } else { denials.get_mut(i as usize) }) else {
                continue;
            };
            *slot += 1;
        }
        if thresholds.iter().zip(&denials).any(|(t, d)| t.deny != 0 && *d >= t.deny) {
            return Some((types::RequestState::Denied, review.reason.clone()));
        }
        let met = |i: &u32| {
            let i = *i as usize;
            thresholds.get(i).is_some_and(|t| t.approve != 0 && approvals[i] >= t.approve)
        };
        let all_roles = spec
            .role_threshold_mapping
            .values()
            .all(|sets| sets.sets.iter().all(|set| set.indexes.iter().any(met)));
        if approve && all_roles {
            return Some((types::RequestState::Approved, review.reason.clone()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(approve: u32, deny: u32) -> types::AccessReviewThreshold {
        types::AccessReviewThreshold { name: String::new(), filter: String::new(), approve, deny }
    }

    fn spec(thresholds: Vec<types::AccessReviewThreshold>, sets: &[&[u32]]) -> types::AccessRequestSpecV3 {
        let sets = types::ThresholdIndexSets {
            sets: sets.iter().map(|s| types::ThresholdIndexSet { indexes: s.to_vec() }).collect(),
        };
        types::AccessRequestSpecV3 {
            roles: vec!["editor".into()],
            thresholds,
            role_threshold_mapping: [("editor".to_string(), sets)].into(),
            ..Default::default()
        }
    }

    fn review(author: &str, approve: bool, indexes: &[u32]) -> types::AccessReview {
        let mut r = access::review(author, approve, author);
        r.threshold_indexes = indexes.to_vec();
        r
    }

    #[test]
    fn two_approvals_needed_leave_the_first_pending() {
        let mut s = spec(vec![threshold(2, 1)], &[&[0]]);
        s.reviews.push(review("a", true, &[0]));
        assert_eq!(resolution(&s), None);
        s.reviews.push(review("b", true, &[0]));
        assert_eq!(resolution(&s), Some((types::RequestState::Approved, "b".into())));
    }

    #[test]
    fn sets_are_and_indexes_inside_a_set_are_or() {
        // Role needs (t0 or t1) and t2.
        let mut s = spec(vec![threshold(1, 0), threshold(2, 0), threshold(1, 0)], &[&[0, 1], &[2]]);
        s.reviews.push(review("a", true, &[0]));
        assert_eq!(resolution(&s), None, "second set not met");
        s.reviews.push(review("b", true, &[2]));
        assert!(matches!(resolution(&s), Some((types::RequestState::Approved, _))));
    }

    #[test]
    fn a_review_matching_no_threshold_moves_nothing() {
        let mut s = spec(vec![threshold(1, 1)], &[&[0]]);
        s.reviews.push(review("a", true, &[]));
        s.reviews.push(review("b", false, &[]));
        assert_eq!(resolution(&s), None);
        s.reviews.push(review("c", false, &[0]));
        assert_eq!(resolution(&s), Some((types::RequestState::Denied, "c".into())));
    }

    #[test]
    fn role_filter_selects_thresholds() {
        let mut t = threshold(1, 1);
        t.filter = r#"contains(reviewer.roles, "super")"#.into();
        let ts = vec![threshold(2, 1), t];
        assert_eq!(matching_thresholds(&ts, &["super".into()]), vec![0, 1]);
        assert_eq!(matching_thresholds(&ts, &["other".into()]), vec![0]);
    }
}
