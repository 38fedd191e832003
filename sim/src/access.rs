//! The simulator's own reading of Teleport's Access Request resources: raw
//! protobuf messages (`types.AccessRequestV3`, `AccessMonitoringRule`) built
//! and changed the way Auth builds and changes them, independent of how the
//! plugin decodes them. Fields the plugin ignores can be set here too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use teleport_plugin_proto::teleport::accessmonitoringrules::v1 as amr;
use teleport_plugin_proto::teleport::header::v1 as header;
use teleport_plugin_proto::{types, wrappers};

/// Go's zero `time.Time` (0001-01-01T00:00:00Z), which gogoproto's non-null
/// timestamps carry when unset.
pub const GO_ZERO_TIME: prost_types::Timestamp = prost_types::Timestamp { seconds: -62_135_596_800, nanos: 0 };

/// A protobuf timestamp of `t` (times before 1970 included).
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 },
        Err(e) => {
            let d = e.duration();
            let mut seconds = -(d.as_secs() as i64);
            let mut nanos = -(d.subsec_nanos() as i32);
            if nanos < 0 {
                seconds -= 1;
                nanos += 1_000_000_000;
            }
            prost_types::Timestamp { seconds, nanos }
        }
    }
}

/// A pending request as `tsh request create` leaves it in the backend: every
/// non-null timestamp present (Go's zero time when unset), empty annotation
/// maps present, no id yet (Auth assigns it on create).
pub fn new_request(user: &str, roles: &[&str]) -> types::AccessRequestV3 {
    types::AccessRequestV3 {
        kind: "access_request".into(),
        sub_kind: String::new(),
        version: "v3".into(),
        metadata: Some(types::Metadata { namespace: "default".into(), ..Default::default() }),
        spec: Some(types::AccessRequestSpecV3 {
            user: user.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            state: types::RequestState::Pending as i32,
            created: Some(GO_ZERO_TIME),
            expires: Some(GO_ZERO_TIME),
            max_duration: Some(GO_ZERO_TIME),
            session_ttl: Some(GO_ZERO_TIME),
            resolve_annotations: Some(wrappers::LabelValues::default()),
            system_annotations: Some(wrappers::LabelValues::default()),
            ..Default::default()
        }),
    }
}

/// A resource id as `tsh request create --resource /cluster/kind/name` sends it.
pub fn resource_id(cluster: &str, kind: &str, name: &str, sub_resource: &str) -> types::ResourceId {
    types::ResourceId {
        cluster_name: cluster.into(),
        kind: kind.into(),
        name: name.into(),
        sub_resource_name: sub_resource.into(),
    }
}

/// A resource requested with SSH login constraints, as `tsh request create
/// --resource '/cluster/node/name|logins=a,b'` sends it: Auth keeps it in
/// `RequestedResourceAccessIDs` (field 26), not in `RequestedResourceIDs`.
pub fn ssh_constrained(cluster: &str, node: &str, logins: &[&str]) -> types::ResourceAccessId {
    constrained(
        resource_id(cluster, "node", node, ""),
        types::resource_constraints::Details::Ssh(types::SshResourceConstraints {
            logins: logins.iter().map(|s| s.to_string()).collect(),
        }),
    )
}

/// An AWS console app requested with a subset of its role ARNs.
pub fn aws_console_constrained(cluster: &str, app: &str, role_arns: &[&str]) -> types::ResourceAccessId {
    constrained(
        resource_id(cluster, "app", app, ""),
        types::resource_constraints::Details::AwsConsole(types::AwsConsoleResourceConstraints {
            role_arns: role_arns.iter().map(|s| s.to_string()).collect(),
        }),
    )
}

fn constrained(id: types::ResourceId, details: types::resource_constraints::Details) -> types::ResourceAccessId {
    types::ResourceAccessId {
        id: Some(id),
        constraints: Some(types::ResourceConstraints { version: "v1".into(), details: Some(details) }),
    }
}

/// System annotations in Teleport's `LabelValues` encoding.
pub fn label_values(pairs: &[(&str, &[&str])]) -> wrappers::LabelValues {
    wrappers::LabelValues {
        values: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), wrappers::StringValues { values: v.iter().map(|s| s.to_string()).collect() }))
            .collect(),
    }
}

/// A review as Auth stores it after `tctl request review` / the web UI.
pub fn review(author: &str, approve: bool, reason: &str) -> types::AccessReview {
    types::AccessReview {
        author: author.into(),
        roles: vec!["reviewer".into()],
        proposed_state: if approve { types::RequestState::Approved } else { types::RequestState::Denied } as i32,
        reason: reason.into(),
        created: Some(timestamp(SystemTime::now())),
        annotations: Some(wrappers::LabelValues::default()),
        ..Default::default()
    }
}

/// Gives `req` review thresholds as Auth derives them from the requester's
/// roles: `thresholds` are (name, filter, approve, deny) in index order, and
/// `mapping` lists, per requested role, its threshold sets (every set must
/// pass; one index inside a set suffices). Without this, the simulator gives
/// a request Auth's default: one threshold approving or denying on one review.
///
/// Filters the simulator evaluates: `""` (every reviewer) and
/// `contains(reviewer.roles, "<role>")`; anything else panics here rather
/// than be mis-evaluated later.
pub fn with_thresholds(
    mut req: types::AccessRequestV3,
    thresholds: &[(&str, &str, u32, u32)],
    mapping: &[(&str, &[&[u32]])],
) -> types::AccessRequestV3 {
    let spec = req.spec_mut();
    spec.thresholds = thresholds
        .iter()
        .map(|(name, filter, approve, deny)| {
            if let Err(e) = threshold_filter_role(filter) {
                panic!("{e}");
            }
            types::AccessReviewThreshold { name: name.to_string(), filter: filter.to_string(), approve: *approve, deny: *deny }
        })
        .collect();
    spec.role_threshold_mapping = mapping
        .iter()
        .map(|(role, sets)| {
            let sets = sets.iter().map(|s| types::ThresholdIndexSet { indexes: s.to_vec() }).collect();
            (role.to_string(), types::ThresholdIndexSets { sets })
        })
        .collect();
    req
}

/// Auth's default review threshold, given to requests created without any.
pub fn default_thresholds(spec: &mut types::AccessRequestSpecV3) {
    if !spec.thresholds.is_empty() {
        return;
    }
    spec.thresholds = vec![types::AccessReviewThreshold { name: "default".into(), filter: String::new(), approve: 1, deny: 1 }];
    for role in &spec.roles {
        spec.role_threshold_mapping.entry(role.clone()).or_insert_with(|| types::ThresholdIndexSets {
            sets: vec![types::ThresholdIndexSet { indexes: vec![0] }],
        });
    }
}

/// The role a threshold filter asks the reviewer to hold: `Ok(None)` for the
/// empty filter (every reviewer), `Ok(Some(role))` for
/// `contains(reviewer.roles, "<role>")`, an error for any other predicate.
pub fn threshold_filter_role(filter: &str) -> Result<Option<&str>, String> {
    let f = filter.trim();
    if f.is_empty() {
        return Ok(None);
    }
    let unsupported = || format!("threshold filter {filter:?} is not simulated (use \"\" or contains(reviewer.roles, \"<role>\"))");
    let inner = f.strip_prefix("contains(").and_then(|r| r.strip_suffix(')')).ok_or_else(unsupported)?;
    let (field, value) = inner.split_once(',').ok_or_else(unsupported)?;
    if field.trim() != "reviewer.roles" {
        return Err(unsupported());
    }
    let value = value.trim();
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).map(Some).ok_or_else(unsupported)
}

/// An Access Monitoring Rule notifying `plugin` (its `notification.name`).
pub fn monitoring_rule(
    name: &str,
    subjects: &[&str],
    condition: &str,
    plugin: &str,
    recipients: &[&str],
) -> amr::AccessMonitoringRule {
    amr::AccessMonitoringRule {
        metadata: Some(header::Metadata { name: name.into(), namespace: "default".into(), ..Default::default() }),
        kind: "access_monitoring_rule".into(),
        sub_kind: String::new(),
        version: "v1".into(),
        spec: Some(amr::AccessMonitoringRuleSpec {
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            states: Vec::new(),
            condition: condition.into(),
            notification: Some(amr::Notification {
                name: plugin.into(),
                recipients: recipients.iter().map(|s| s.to_string()).collect(),
            }),
            schedules: Default::default(),
        }),
    }
}

/// Adds `spec.schedules[name]`: `shifts` of (weekday, "HH:MM", "HH:MM") in
/// the IANA time zone `timezone` ("" for UTC).
pub fn with_schedule(
    mut rule: amr::AccessMonitoringRule,
    name: &str,
    timezone: &str,
    shifts: &[(&str, &str, &str)],
) -> amr::AccessMonitoringRule {
    let time = amr::TimeSchedule {
        timezone: timezone.into(),
        shifts: shifts
            .iter()
            .map(|(weekday, start, end)| amr::time_schedule::Shift {
                weekday: weekday.to_string(),
                start: start.to_string(),
                end: end.to_string(),
            })
            .collect(),
    };
    rule.spec.get_or_insert_with(Default::default).schedules.insert(name.into(), amr::Schedule { time: Some(time) });
    rule
}

/// Read access to the parts of a stored request tests and the simulator use.
pub trait AccessRequestExt {
    fn id(&self) -> &str;
    fn state(&self) -> types::RequestState;
    fn spec_mut(&mut self) -> &mut types::AccessRequestSpecV3;
    fn metadata_mut(&mut self) -> &mut types::Metadata;
}

impl AccessRequestExt for types::AccessRequestV3 {
    fn id(&self) -> &str {
        self.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
    }

    fn state(&self) -> types::RequestState {
        self.spec
            .as_ref()
            .and_then(|s| types::RequestState::try_from(s.state).ok())
            .unwrap_or(types::RequestState::None)
    }

    fn spec_mut(&mut self) -> &mut types::AccessRequestSpecV3 {
        self.spec.get_or_insert_with(Default::default)
    }

    fn metadata_mut(&mut self) -> &mut types::Metadata {
        self.metadata.get_or_insert_with(Default::default)
    }
}

/// Default lifetime of a pending request (its TTL, `Metadata.Expires`).
pub const DEFAULT_REQUEST_TTL: Duration = Duration::from_secs(3600);

/// Default end of the access an approval would grant (`Spec.Expires`,
/// upstream's access expiry): Teleport's maximum certificate duration.
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(30 * 3600);

/// `true` when the protobuf timestamp is unset (absent or Go's zero time).
pub fn is_unset(ts: Option<&prost_types::Timestamp>) -> bool {
    ts.is_none_or(|t| t.seconds <= GO_ZERO_TIME.seconds || (t.seconds == 0 && t.nanos == 0))
}
