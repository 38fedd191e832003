//! What a message shows about a request, independent of the chat.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::model::{AccessRequest, RequestState, Review};
use crate::teleport::plugin_data::{RequestData, Resolution};

/// Status shown on a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Expired,
    Promoted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Denied => "DENIED",
            Self::Expired => "EXPIRED",
            Self::Promoted => "PROMOTED",
        }
    }

    /// The emoji the official plugins show next to the state.
    pub fn emoji(self) -> &'static str {
        match self {
            Self::Pending => "⏳",
            Self::Approved => "✅",
            Self::Denied => "❌",
            Self::Expired => "⌛",
            Self::Promoted => "🎉",
        }
    }

    pub fn is_final(self) -> bool {
        self != Self::Pending
    }

    pub fn from_resolution(r: Resolution) -> Self {
        match r {
            Resolution::Unresolved => Self::Pending,
            Resolution::Approved => Self::Approved,
            Resolution::Denied => Self::Denied,
            Resolution::Expired => Self::Expired,
            Resolution::Promoted => Self::Promoted,
        }
    }
}

/// Everything a renderer needs. User-supplied strings are raw here; each
/// renderer escapes them for its chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub id: String,
    pub cluster: String,
    pub user: String,
    pub roles: Vec<String>,
    /// Allowed logins per requested role, when the plugin may read roles.
    pub logins_by_role: BTreeMap<String, Vec<String>>,
    /// Requested resources, display form.
    pub resources: Vec<String>,
    pub request_reason: String,
    pub status: Status,
    pub resolve_reason: String,
    pub reviews: Vec<Review>,
    /// Web UI link to the request; `None` shows the `tsh` commands instead.
    pub link: Option<String>,
    pub long_term: bool,
    pub promoted_to: Option<String>,
    pub created: Option<SystemTime>,
    pub expires: Option<SystemTime>,
    /// Approve/Deny buttons are shown: review from chat is on for this chat,
    /// the request is pending and not long-term. Set by the engine.
    pub buttons: bool,
    /// Approvals still needed before the request is approved, when more than
    /// one is (a multi-approval request stays pending after one click).
    pub approvals_needed: Option<u32>,
}

impl RequestView {
    /// Builds the view of a live request. `status` overrides the request's
    /// own state (e.g. the resolution recorded in plugin data).
    pub fn from_request(
        r: &AccessRequest,
        cluster: &str,
        link: Option<String>,
        logins_by_role: BTreeMap<String, Vec<String>>,
        status: Status,
    ) -> Self {
        Self {
            id: r.id.clone(),
            cluster: cluster.to_string(),
            user: r.user.clone(),
            roles: r.roles.clone(),
            logins_by_role,
            resources: r.requested_resources().map(|x| x.to_string()).collect(),
            request_reason: r.request_reason.clone(),
            status,
            resolve_reason: r.resolve_reason.clone(),
            reviews: r.reviews.clone(),
            link,
            long_term: r.long_term,
            promoted_to: r.promoted_to.clone(),
            created: r.created,
            expires: r.expires,
            buttons: false,
            approvals_needed: None,
        }
    }

    /// Builds the view from plugin data alone (the request was deleted).
    pub fn from_record(id: &str, d: &RequestData, cluster: &str, link: Option<String>) -> Self {
        Self {
            id: id.to_string(),
            cluster: cluster.to_string(),
            user: d.user.clone(),
            roles: d.roles.clone(),
            logins_by_role: d.logins_by_role.clone(),
            resources: d.resources.clone(),
            request_reason: d.request_reason.clone(),
            status: Status::from_resolution(d.resolution),
            resolve_reason: d.resolve_reason.clone(),
            reviews: Vec::new(),
            link,
            long_term: false,
            promoted_to: None,
            created: None,
            expires: None,
            buttons: false,
            approvals_needed: None,
        }
    }

    /// Title as the official plugins word it.
    pub fn title(&self) -> &'static str {
        match (self.resources.is_empty(), self.long_term) {
            (true, _) => "You have a new Role Request:",
            (false, false) => "You have a new Resource Request:",
            (false, true) => "You have a new Resource Request (long-term access):",
        }
    }

    /// `tsh` commands shown when there is no web link and the request is open.
    pub fn tsh_commands(&self) -> Option<(String, String)> {
        (self.link.is_none() && self.status == Status::Pending).then(|| {
            (format!("tsh request review --approve {}", self.id), format!("tsh request review --deny {}", self.id))
        })
    }
}

/// The state a review proposes, as shown in replies.
pub fn review_status(r: &Review) -> Status {
    match r.proposed_state {
        RequestState::Approved => Status::Approved,
        RequestState::Denied => Status::Denied,
        RequestState::Promoted => Status::Promoted,
        _ => Status::Pending,
    }
}

/// Web UI link for a request, as the official plugins build it: only when the
/// cluster has the web review UI (Enterprise access workflows), `:443` dropped.
pub fn web_link(proxy_public_addr: &str, advanced_workflows: bool, id: &str) -> Option<String> {
    let addr = proxy_public_addr.split(',').next().unwrap_or_default().trim();
    if !advanced_workflows || addr.is_empty() {
        return None;
    }
    let host = addr.strip_prefix("https://").unwrap_or(addr);
    let host = host.strip_suffix(":443").unwrap_or(host);
    Some(format!("https://{host}/web/requests/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_follow_the_official_rules() {
        assert_eq!(web_link("teleport.example.com:443", true, "abc").as_deref(), Some("https://teleport.example.com/web/requests/abc"));
        assert_eq!(web_link("t.example.com:3080", true, "abc").as_deref(), Some("https://t.example.com:3080/web/requests/abc"));
        assert_eq!(web_link("t.example.com:443", false, "abc"), None);
        assert_eq!(web_link("", true, "abc"), None);
    }

    #[test]
    fn titles_vary_with_resources_and_long_term() {
        let mut r = AccessRequest::new_pending("id", "alice", vec!["editor".into()]);
        let v = RequestView::from_request(&r, "c", None, BTreeMap::new(), Status::Pending);
        assert_eq!(v.title(), "You have a new Role Request:");
        assert!(v.tsh_commands().is_some());
        r.resources.push(crate::model::ResourceId { cluster: "c".into(), kind: "node".into(), name: "n".into(), sub_resource: String::new() });
        r.long_term = true;
        let v = RequestView::from_request(&r, "c", Some("https://x".into()), BTreeMap::new(), Status::Approved);
        assert_eq!(v.title(), "You have a new Resource Request (long-term access):");
        assert!(v.tsh_commands().is_none());
    }
}
