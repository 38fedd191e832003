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
        }
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
