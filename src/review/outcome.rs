//! What a submission's answer means for the clicker (pure).

use crate::chat::click::{Decision, Outcome, SubmittedState};
use crate::model::{AccessRequest, RequestState};
use crate::teleport::review::ReviewError;

/// The outcome of submitting `decision` as `user`.
pub fn of_submission(decision: Decision, user: &str, result: Result<AccessRequest, ReviewError>) -> Outcome {
    match result {
        Ok(r) => Outcome::Submitted { decision, state: state_after(&r) },
        Err(ReviewError::NotPermitted(_)) => Outcome::NotPermitted(user.to_string()),
        Err(ReviewError::AlreadyReviewed) => Outcome::AlreadyReviewed,
        Err(ReviewError::AlreadyResolved | ReviewError::NotFound) => Outcome::AlreadyResolved,
        // Displayed with the fix (role rule, server version), not Auth's bare text.
        Err(e @ ReviewError::OnBehalfUnsupported(_)) => Outcome::Unavailable(e.to_string()),
        Err(e @ (ReviewError::Busy | ReviewError::Unreachable(_))) => Outcome::Retry(e.to_string()),
        Err(ReviewError::Other(why)) => Outcome::Unavailable(why),
    }
}

/// Where the request stands after a review was applied.
pub fn state_after(r: &AccessRequest) -> SubmittedState {
    match r.state {
        RequestState::Approved => SubmittedState::Approved,
        RequestState::Denied => SubmittedState::Denied,
        _ => SubmittedState::Pending { approvals_needed: r.approvals_needed() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(state: RequestState) -> AccessRequest {
        let mut r = AccessRequest::new_pending("r1", "bob", vec!["editor".into()]);
        r.state = state;
        r
    }

    #[test]
    fn answers_read_as_the_clicker_needs() {
        let ok = of_submission(Decision::Approve, "alice", Ok(request(RequestState::Approved)));
        assert_eq!(ok, Outcome::Submitted { decision: Decision::Approve, state: SubmittedState::Approved });
        let pending = of_submission(Decision::Approve, "alice", Ok(request(RequestState::Pending)));
        assert!(matches!(pending, Outcome::Submitted { state: SubmittedState::Pending { .. }, .. }));
        assert_eq!(
            of_submission(Decision::Deny, "alice", Err(ReviewError::NotPermitted("x".into()))),
            Outcome::NotPermitted("alice".into())
        );
        assert_eq!(of_submission(Decision::Deny, "alice", Err(ReviewError::AlreadyReviewed)), Outcome::AlreadyReviewed);
        assert_eq!(of_submission(Decision::Deny, "alice", Err(ReviewError::NotFound)), Outcome::AlreadyResolved);
        assert_eq!(of_submission(Decision::Deny, "alice", Err(ReviewError::AlreadyResolved)), Outcome::AlreadyResolved);
        assert!(matches!(of_submission(Decision::Deny, "a", Err(ReviewError::Busy)), Outcome::Retry(_)));
        assert!(matches!(
            of_submission(Decision::Deny, "a", Err(ReviewError::OnBehalfUnsupported("old".into()))),
            Outcome::Unavailable(_)
        ));
    }
}
