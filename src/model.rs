//! Domain types for Access Requests, independent of the protobuf encoding.
//!
//! The gRPC layer converts `pb::types::AccessRequestV3` into these (see
//! `teleport::convert`); everything above it (engine, rendering, routing) only
//! sees these types.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

/// State of an Access Request, as Teleport reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    Pending,
    Approved,
    Denied,
    Promoted,
    /// `NONE` or a value this build does not know.
    Unknown(i32),
}

impl RequestState {
    pub fn is_resolved(self) -> bool {
        matches!(self, Self::Approved | Self::Denied | Self::Promoted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Denied => "DENIED",
            Self::Promoted => "PROMOTED",
            Self::Unknown(_) => "UNKNOWN",
        }
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource requested by a resource-based Access Request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResourceId {
    pub cluster: String,
    pub kind: String,
    pub name: String,
    pub sub_resource: String,
}

impl fmt::Display for ResourceId {
    /// Teleport's canonical string form: `/<cluster>/<kind>/<name>[/<sub>]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/{}/{}", self.cluster, self.kind, self.name)?;
        if !self.sub_resource.is_empty() {
            write!(f, "/{}", self.sub_resource)?;
        }
        Ok(())
    }
}

/// What a constrained resource request narrows access to (Teleport's
/// `ResourceConstraints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceConstraints {
    /// SSH node: only these logins.
    SshLogins(Vec<String>),
    /// AWS console app: only these role ARNs.
    AwsConsoleRoleArns(Vec<String>),
    /// Constraints of a kind this build does not know.
    Unrecognized,
}

impl fmt::Display for ResourceConstraints {
    /// The `key=value,value` form `tsh request show` prints after the id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SshLogins(v) => write!(f, "logins={}", v.join(",")),
            Self::AwsConsoleRoleArns(v) => write!(f, "role_arns={}", v.join(",")),
            Self::Unrecognized => f.write_str("constraints not shown"),
        }
    }
}

/// A resource requested with constraints (`RequestedResourceAccessIDs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstrainedResource {
    pub id: ResourceId,
    pub constraints: ResourceConstraints,
}

/// One requested resource, constrained or not, for display and routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedResource<'a> {
    pub id: &'a ResourceId,
    pub constraints: Option<&'a ResourceConstraints>,
}

impl fmt::Display for RequestedResource<'_> {
    /// `/<cluster>/<kind>/<name>[/<sub>]`, then ` (logins=a,b)` when constrained.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)?;
        if let Some(c) = self.constraints {
            write!(f, " ({c})")?;
        }
        Ok(())
    }
}

/// One review submitted on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub author: String,
    pub roles: Vec<String>,
    pub proposed_state: RequestState,
    pub reason: String,
    pub created: Option<SystemTime>,
}

/// One review threshold of a request (Teleport's `AccessReviewThreshold`):
/// how many matching approvals approve, how many denials deny. Zero means
/// the threshold never triggers that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    pub name: String,
    /// Predicate selecting the reviews that count; empty counts every review.
    pub filter: String,
    pub approve: u32,
    pub deny: u32,
}

/// An Access Request as the plugin needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// The request UUID (resource name).
    pub id: String,
    pub user: String,
    pub roles: Vec<String>,
    pub state: RequestState,
    pub created: Option<SystemTime>,
    /// When the request itself expires (`Metadata.Expires`: Auth deletes a
    /// pending request then).
    pub expires: Option<SystemTime>,
    pub request_reason: String,
    pub resolve_reason: String,
    pub system_annotations: BTreeMap<String, Vec<String>>,
    pub labels: BTreeMap<String, String>,
    pub reviews: Vec<Review>,
    pub suggested_reviewers: Vec<String>,
    /// Resources requested without constraints (`RequestedResourceIDs`).
    pub resources: Vec<ResourceId>,
    /// Resources requested with constraints (`RequestedResourceAccessIDs`).
    pub constrained_resources: Vec<ConstrainedResource>,
    /// Absolute time the granted access may last until, when set.
    pub max_duration: Option<SystemTime>,
    /// Long-term (rather than short-term) access request.
    pub long_term: bool,
    /// Title of the Access List the request was promoted to, if any.
    pub promoted_to: Option<String>,
    /// Review thresholds, in index order (Auth refers to them by index).
    pub thresholds: Vec<Threshold>,
    /// Requested role → its threshold sets: every set must pass, and a set
    /// passes when one of its thresholds reached its approval count.
    pub role_thresholds: BTreeMap<String, Vec<Vec<u32>>>,
    /// Review author → indexes of the thresholds that author's review counts
    /// toward (Auth stores one review per author, so the author names it).
    pub review_thresholds: BTreeMap<String, Vec<u32>>,
}

impl AccessRequest {
    /// A minimal pending request; the rest can be filled in by the caller.
    pub fn new_pending(id: impl Into<String>, user: impl Into<String>, roles: Vec<String>) -> Self {
        Self {
            id: id.into(),
            user: user.into(),
            roles,
            state: RequestState::Pending,
            created: None,
            expires: None,
            request_reason: String::new(),
            resolve_reason: String::new(),
            system_annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            reviews: Vec::new(),
            suggested_reviewers: Vec::new(),
            resources: Vec::new(),
            constrained_resources: Vec::new(),
            max_duration: None,
            long_term: false,
            promoted_to: None,
            thresholds: Vec::new(),
            role_thresholds: BTreeMap::new(),
            review_thresholds: BTreeMap::new(),
        }
    }

    /// How many more approvals the request needs at the least, following
    /// Auth's review-based resolution: per threshold set the fewest missing
    /// approvals among its thresholds, per role the largest over its sets,
    /// for the request the largest over its roles. It assumes each further
    /// approval counts toward every threshold (a reviewer matching no
    /// filter moves nothing, so the real number can be higher).
    ///
    /// 0 once resolved, at least 1 while pending. A request without
    /// thresholds (not from Auth, which always sets them) is read with Auth's
    /// default: one approval.
    /// `u32::MAX` when no number of approvals can approve it (a set whose
    /// thresholds all have `approve = 0`, or point nowhere).
    pub fn approvals_needed(&self) -> u32 {
        if self.state.is_resolved() {
            return 0;
        }
        if self.thresholds.is_empty() || self.role_thresholds.is_empty() {
            return 1;
        }
        let mut approvals = vec![0u32; self.thresholds.len()];
        for review in self.reviews.iter().filter(|r| r.proposed_state == RequestState::Approved) {
            for &i in self.review_thresholds.get(&review.author).into_iter().flatten() {
                if let Some(n) = approvals.get_mut(i as usize) {
                    *n += 1;
                }
            }
        }
        let missing = |i: &u32| match self.thresholds.get(*i as usize) {
            Some(t) if t.approve != 0 => t.approve.saturating_sub(approvals[*i as usize]),
            _ => u32::MAX,
        };
        let needed = self
            .role_thresholds
            .values()
            .flat_map(|sets| sets.iter().map(|set| set.iter().map(missing).min().unwrap_or(u32::MAX)))
            .max()
            .unwrap_or(0);
        // Auth resolves on the review that meets the counts, so a request
        // still pending needs one more approval at least.
        needed.max(1)
    }
}

impl AccessRequest {
    /// Every requested resource: the unconstrained ones first, then the
    /// constrained ones, as Teleport combines the two fields.
    pub fn requested_resources(&self) -> impl Iterator<Item = RequestedResource<'_>> {
        let plain = self.resources.iter().map(|id| RequestedResource { id, constraints: None });
        let constrained =
            self.constrained_resources.iter().map(|c| RequestedResource { id: &c.id, constraints: Some(&c.constraints) });
        plain.chain(constrained)
    }

    /// Whether the request asks for resources rather than roles only.
    pub fn has_resources(&self) -> bool {
        !self.resources.is_empty() || !self.constrained_resources.is_empty()
    }
}

/// An Access Monitoring Rule relevant to notification routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoringRule {
    pub name: String,
    pub subjects: Vec<String>,
    pub condition: String,
    /// `spec.notification.name`: the plugin the rule targets.
    pub notification_name: String,
    pub recipients: Vec<String>,
    /// `spec.schedules`: when non-empty, the rule applies only to requests
    /// created inside one of them.
    pub schedules: BTreeMap<String, Schedule>,
}

/// One named schedule of a rule: weekly shifts in a time zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// IANA name; empty means UTC. `None`: the schedule has no `time` part.
    pub timezone: Option<String>,
    pub shifts: Vec<Shift>,
}

/// `weekday` as Go names it ("Monday"), `start`/`end` as `HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub weekday: String,
    pub start: String,
    pub end: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(approve: u32, deny: u32) -> Threshold {
        Threshold { name: String::new(), filter: String::new(), approve, deny }
    }

    fn request(thresholds: Vec<Threshold>, roles: &[(&str, &[&[u32]])]) -> AccessRequest {
        let mut r = AccessRequest::new_pending("id", "alice", roles.iter().map(|(n, _)| n.to_string()).collect());
        r.thresholds = thresholds;
        r.role_thresholds = roles.iter().map(|(n, sets)| (n.to_string(), sets.iter().map(|s| s.to_vec()).collect())).collect();
        r
    }

    fn review(r: &mut AccessRequest, author: &str, state: RequestState, indexes: &[u32]) {
        r.reviews.push(Review { author: author.into(), roles: vec![], proposed_state: state, reason: String::new(), created: None });
        r.review_thresholds.insert(author.into(), indexes.to_vec());
    }

    #[test]
    fn default_threshold_needs_one_approval() {
        let r = request(vec![threshold(1, 1)], &[("editor", &[&[0]])]);
        assert_eq!(r.approvals_needed(), 1);
        let bare = AccessRequest::new_pending("id", "alice", vec!["editor".into()]);
        assert_eq!(bare.approvals_needed(), 1, "no thresholds: Auth's default");
    }

    #[test]
    fn resolved_needs_nothing() {
        let mut r = request(vec![threshold(3, 1)], &[("editor", &[&[0]])]);
        for state in [RequestState::Approved, RequestState::Denied, RequestState::Promoted] {
            r.state = state;
            assert_eq!(r.approvals_needed(), 0, "{state}");
        }
    }

    #[test]
    fn counts_down_with_matching_approvals_only() {
        let mut r = request(vec![threshold(3, 2)], &[("editor", &[&[0]])]);
        review(&mut r, "bob", RequestState::Approved, &[0]);
        assert_eq!(r.approvals_needed(), 2);
        review(&mut r, "carol", RequestState::Denied, &[0]);
        assert_eq!(r.approvals_needed(), 2, "a denial does not count");
        review(&mut r, "dave", RequestState::Approved, &[]);
        assert_eq!(r.approvals_needed(), 2, "matched no threshold");
        review(&mut r, "erin", RequestState::Approved, &[0]);
        assert_eq!(r.approvals_needed(), 1);
    }

    #[test]
    fn sets_take_the_largest_indexes_in_a_set_the_smallest() {
        // editor: (t0: 2 or t1: 3) and t2: 1; auditor: t1.
        let mut r = request(
            vec![threshold(2, 1), threshold(3, 1), threshold(1, 1)],
            &[("editor", &[&[0, 1], &[2]]), ("auditor", &[&[1]])],
        );
        assert_eq!(r.approvals_needed(), 3, "auditor's t1 needs 3");
        review(&mut r, "bob", RequestState::Approved, &[0, 1]);
        assert_eq!(r.approvals_needed(), 2);
        review(&mut r, "carol", RequestState::Approved, &[1, 2]);
        assert_eq!(r.approvals_needed(), 1, "editor met, auditor's t1 at 2 of 3");
    }

    #[test]
    fn a_set_that_cannot_pass_is_unbounded() {
        let r = request(vec![threshold(0, 1)], &[("editor", &[&[0]])]);
        assert_eq!(r.approvals_needed(), u32::MAX);
        let r = request(vec![threshold(1, 1)], &[("editor", &[&[7]])]);
        assert_eq!(r.approvals_needed(), u32::MAX, "index out of range");
    }

    #[test]
    fn a_pending_request_needs_one_at_least() {
        let mut r = request(vec![threshold(1, 1)], &[("editor", &[&[0]])]);
        review(&mut r, "bob", RequestState::Approved, &[0]);
        assert_eq!(r.approvals_needed(), 1, "counts met but not yet resolved: the event is behind");
    }
}
