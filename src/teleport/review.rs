//! Reviews submitted on behalf of a mapped Teleport user (Approve/Deny from
//! chat), and what Auth's refusals mean.
//!
//! The plugin's identity submits the review with `Author` = the human and
//! `submitted_on_behalf_of_author` set; Auth then checks the plugin's
//! `review_requests.submit_for_users` rule against the author, and the
//! author's own review rights against the request. Auth answers most
//! refusals with PERMISSION_DENIED, so they are told apart by message text
//! (as upstream's plugins do).

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tonic::{Code, Status};

use super::client::{TeleportClient, unary};
use super::convert;
use crate::model::AccessRequest;
use crate::pb::{proto, types};

/// Why Auth did not take a review. Carries Auth's own message where it names
/// the user or request involved; never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// The author has no review rights, may not review this request (its
    /// roles, or it is the author's own request), or another access rule
    /// refused it.
    #[error("not permitted to review this request ({0})")]
    NotPermitted(String),
    /// The author already reviewed this request (either way).
    #[error("this request was already reviewed by this user")]
    AlreadyReviewed,
    /// The request is already approved, denied or promoted.
    #[error("this request is already resolved")]
    AlreadyResolved,
    /// The request is gone: expired (Auth deletes it) or never existed.
    #[error("this request no longer exists (expired or deleted)")]
    NotFound,
    /// Auth took the review as written by the plugin itself: it predates
    /// on-behalf reviews, or the plugin's role has no
    /// `review_requests.submit_for_users` rule for this author. Auth's
    /// message is the same in both cases.
    #[error(
        "Teleport refused a review on another user's behalf ({0}): the Auth server predates on-behalf reviews (Teleport 18.11), or the plugin's role lacks review_requests.submit_for_users for this user"
    )]
    OnBehalfUnsupported(String),
    /// Concurrent writes to the request outlasted Auth's retries (CompareFailed).
    #[error("Teleport is busy with concurrent changes to this request; try again")]
    Busy,
    /// Auth could not be reached or did not answer in time.
    #[error("Teleport unreachable ({0})")]
    Unreachable(String),
    #[error("Teleport refused the review ({0})")]
    Other(String),
}

/// Tells Auth's answers apart by code and message text (pure). Auth uses
/// PERMISSION_DENIED for not permitted, own request, already reviewed and
/// already resolved alike; the texts are those of Auth's review path
/// (`user "<a>" has already reviewed this request`, `the access request has
/// been already approved|denied|promoted`, `user "<c>" cannot submit reviews
/// on behalf of "<a>"`, `user "<a>" cannot review request "<id>"`,
/// `user "<a>" cannot submit reviews`), matched by substring.
pub fn classify(status: &Status) -> ReviewError {
    let msg = status.message();
    let text = || if msg.is_empty() { format!("{:?}", status.code()) } else { msg.to_string() };
    match status.code() {
        Code::PermissionDenied if msg.contains("has already reviewed this request") => ReviewError::AlreadyReviewed,
        Code::PermissionDenied if msg.contains("the access request has been already") => ReviewError::AlreadyResolved,
        Code::PermissionDenied if msg.contains("cannot submit reviews on behalf of") => {
            ReviewError::OnBehalfUnsupported(text())
        }
        // Auth's client version policy is not about this review.
        Code::PermissionDenied if msg.contains("client version is unsupported") => ReviewError::Other(text()),
        Code::PermissionDenied => ReviewError::NotPermitted(text()),
        // NOT_FOUND also answers an author that is not a Teleport user.
        Code::NotFound if msg.contains("access request") => ReviewError::NotFound,
        Code::FailedPrecondition => ReviewError::Busy,
        Code::Unavailable | Code::DeadlineExceeded => ReviewError::Unreachable(text()),
        // The connection failed under the call (tonic answers UNKNOWN
        // "transport error"): whether Auth applied it is not known.
        _ if is_transport_failure(status) => ReviewError::Unreachable(text()),
        _ => ReviewError::Other(text()),
    }
}

/// Whether `status` comes from the connection rather than from Auth.
fn is_transport_failure(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<hyper::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Pause before the one retry after CompareFailed (Auth already retried for
/// about two seconds).
const BUSY_RETRY_PAUSE: Duration = Duration::from_millis(200);

impl TeleportClient {
    /// `SubmitAccessReview` on behalf of `author`: `SubmittedOnBehalfOfAuthor
    /// = true`, `Created` = now, no role subselection and no annotations
    /// (Auth refuses both as not implemented). `SubmittedBy` stays empty, as
    /// upstream's plugin leaves it: the server knows the caller. Retries once
    /// on [`ReviewError::Busy`]. Returns the request after the review (still
    /// PENDING when more approvals are needed).
    pub async fn submit_review_on_behalf(
        &self,
        request_id: &str,
        author: &str,
        approve: bool,
        reason: &str,
    ) -> Result<AccessRequest, ReviewError> {
        let submission = types::AccessReviewSubmission {
            request_id: request_id.into(),
            review: Some(types::AccessReview {
                author: author.into(),
                proposed_state: if approve { types::RequestState::Approved } else { types::RequestState::Denied } as i32,
                reason: reason.into(),
                created: Some(convert::time_to_pb(SystemTime::now())),
                submitted_on_behalf_of_author: true,
                ..Default::default()
            }),
        };
        let mut retried = false;
        loop {
            match self.connection().auth().submit_access_review(unary(submission.clone())).await {
                Ok(r) => return Ok(convert::request_from_pb(&r.into_inner())),
                Err(s) => match classify(&s) {
                    ReviewError::Busy if !retried => {
                        retried = true;
                        tokio::time::sleep(BUSY_RETRY_PAUSE).await;
                    }
                    e => return Err(e),
                },
            }
        }
    }

    /// After a submission whose answer was lost (the connection failed under
    /// it): the request, if it carries `author`'s review with this decision,
    /// i.e. the review was applied. `None` when it is not there or the
    /// request cannot be read.
    pub async fn review_landed(&self, request_id: &str, author: &str, approve: bool) -> Option<AccessRequest> {
        let wanted = if approve { crate::model::RequestState::Approved } else { crate::model::RequestState::Denied };
        let request = self.get_access_request(request_id).await.ok()??;
        request.reviews.iter().any(|r| r.author == author && r.proposed_state == wanted).then_some(request)
    }

    /// One access request by id, as upstream's `GetAccessRequests` with an
    /// ID filter: `ListAccessRequests` (a direct look-up on Auth), falling
    /// back to the `GetAccessRequestsV2` stream on servers without it.
    /// `Ok(None)` when it is gone (expired requests are deleted).
    pub async fn get_access_request(&self, id: &str) -> Result<Option<AccessRequest>, Status> {
        let conn = self.connection();
        let filter = types::AccessRequestFilter { id: id.into(), ..Default::default() };
        let req = proto::ListAccessRequestsRequest { filter: Some(filter.clone()), limit: 1, ..Default::default() };
        let found = match conn.auth().list_access_requests(unary(req)).await {
            Ok(page) => page.into_inner().access_requests.into_iter().find(|r| r.metadata.as_ref().is_some_and(|m| m.name == id)),
            Err(s) if s.code() == Code::Unimplemented => {
                let mut stream = match conn.auth().get_access_requests_v2(unary(filter)).await {
                    Ok(s) => s.into_inner(),
                    Err(s) if s.code() == Code::NotFound => return Ok(None),
                    Err(s) => return Err(s),
                };
                let mut found = None;
                while let Some(item) = stream.next().await {
                    let item = item?;
                    if item.metadata.as_ref().is_some_and(|m| m.name == id) {
                        found = Some(item);
                    }
                }
                found
            }
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(s),
        };
        Ok(found.as_ref().map(convert::request_from_pb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(msg: &str) -> Status {
        Status::permission_denied(msg)
    }

    #[test]
    fn auths_permission_denied_texts_are_told_apart() {
        assert_eq!(classify(&denied(r#"user "bob" has already reviewed this request"#)), ReviewError::AlreadyReviewed);
        for state in ["approved", "denied", "promoted"] {
            let s = denied(&format!("the access request has been already {state}"));
            assert_eq!(classify(&s), ReviewError::AlreadyResolved, "{state}");
        }
        let on_behalf = r#"user "access-plugin" cannot submit reviews on behalf of "bob""#;
        assert_eq!(classify(&denied(on_behalf)), ReviewError::OnBehalfUnsupported(on_behalf.into()));
        let own = r#"user "alice" cannot review request "0b5e8a2c-4f3d-4e7a-9c1b-2d6f8e0a1b3c""#;
        assert_eq!(classify(&denied(own)), ReviewError::NotPermitted(own.into()));
        let no_rights = r#"user "bob" cannot submit reviews"#;
        assert_eq!(classify(&denied(no_rights)), ReviewError::NotPermitted(no_rights.into()));
        let mfa = "admin-level API request requires MFA verification";
        assert_eq!(classify(&denied(mfa)), ReviewError::NotPermitted(mfa.into()));
    }

    #[test]
    fn other_codes() {
        let gone = Status::not_found(r#"cannot apply review to access request "r1" (not found)"#);
        assert_eq!(classify(&gone), ReviewError::NotFound);
        let no_user = Status::not_found(r#"user "ghost" is not found"#);
        assert!(matches!(classify(&no_user), ReviewError::Other(m) if m.contains("ghost")), "not the request");
        let busy = Status::failed_precondition("too many concurrent writes to access request r1, try again later");
        assert_eq!(classify(&busy), ReviewError::Busy);
        assert!(matches!(classify(&Status::unavailable("connection refused")), ReviewError::Unreachable(_)));
        assert!(matches!(classify(&Status::deadline_exceeded("")), ReviewError::Unreachable(m) if m == "DeadlineExceeded"));
        let subselect = Status::unimplemented("role subselection is not yet supported in reviews, try omitting role list");
        assert!(matches!(classify(&subselect), ReviewError::Other(_)));
        // The connection failed under the call: UNKNOWN with a transport cause.
        let mut lost = Status::unknown("transport error");
        lost.set_source(std::sync::Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
        assert!(matches!(classify(&lost), ReviewError::Unreachable(_)), "{:?}", classify(&lost));
        assert!(matches!(classify(&Status::unknown("transport error")), ReviewError::Other(_)), "Auth's own UNKNOWN");
        let version = denied("client version is unsupported");
        assert!(matches!(classify(&version), ReviewError::Other(_)));
    }

    #[test]
    fn display_is_short_and_names_the_fix() {
        let e = ReviewError::OnBehalfUnsupported(r#"user "p" cannot submit reviews on behalf of "b""#.into());
        let text = e.to_string();
        assert!(text.contains("submit_for_users") && text.contains("18.11"), "{text}");
        assert_eq!(ReviewError::AlreadyReviewed.to_string(), "this request was already reviewed by this user");
    }
}
