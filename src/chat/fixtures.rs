//! Requests and reviews shared by the renderers' tests.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::chat::{RequestView, Status};
use crate::model::{AccessRequest, RequestState, Review};

/// A pending role request by `alice` for `editor`.
pub fn view() -> RequestView {
    let r = AccessRequest::new_pending("4b1d-id", "alice", vec!["editor".into()]);
    RequestView::from_request(&r, "prod", None, BTreeMap::new(), Status::Pending)
}

/// A review created at a fixed time.
pub fn review(author: &str, state: RequestState, reason: &str) -> Review {
    Review {
        author: author.into(),
        roles: vec![],
        proposed_state: state,
        reason: reason.into(),
        created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
    }
}

/// Every `@` is defused (followed by a zero-width space) and the user's
/// backticks in the hostile fixtures cannot close our code spans.
pub fn assert_inert(s: &str) {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '@' {
            assert_eq!(chars.peek(), Some(&'\u{200B}'), "a live @ in {}", &s[..s.len().min(300)]);
        }
    }
    assert!(!s.contains("```code```"));
}
