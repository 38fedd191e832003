//! Conversions between the protobuf messages and the domain model.
//!
//! Teleport serialises gogoproto "non-null" timestamps even when unset, as Go's
//! zero time (0001-01-01T00:00:00Z); both that value and absence mean "unset".

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::timefmt::rfc3339;
use crate::model::{
    AccessRequest, ConstrainedResource, MonitoringRule, RequestState, ResourceConstraints, ResourceId, Review, Schedule, Shift,
    Threshold,
};
use crate::pb::teleport::accessmonitoringrules::v1 as amr;
use crate::pb::teleport::header::v1 as header;
use crate::pb::types;
use crate::pb::wrappers;

/// Seconds of Go's zero `time.Time` relative to the Unix epoch.
const GO_ZERO_TIME_SECS: i64 = -62_135_596_800;

pub fn time_from_pb(ts: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    if ts.seconds <= GO_ZERO_TIME_SECS || (ts.seconds == 0 && ts.nanos == 0) {
        return None;
    }
    let nanos = u32::try_from(ts.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    if ts.seconds >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(ts.seconds as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(ts.seconds.unsigned_abs()))?
            .checked_add(Duration::from_nanos(nanos.into()))
    }
}

pub fn time_to_pb(t: SystemTime) -> prost_types::Timestamp {
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

pub fn state_from_pb(v: i32) -> RequestState {
    match types::RequestState::try_from(v) {
        Ok(types::RequestState::Pending) => RequestState::Pending,
        Ok(types::RequestState::Approved) => RequestState::Approved,
        Ok(types::RequestState::Denied) => RequestState::Denied,
        Ok(types::RequestState::Promoted) => RequestState::Promoted,
        _ => RequestState::Unknown(v),
    }
}

pub fn state_to_pb(s: RequestState) -> i32 {
    (match s {
        RequestState::Pending => types::RequestState::Pending,
        RequestState::Approved => types::RequestState::Approved,
        RequestState::Denied => types::RequestState::Denied,
        RequestState::Promoted => types::RequestState::Promoted,
        RequestState::Unknown(v) => return v,
    }) as i32
}

fn labels_from_pb(v: Option<&wrappers::LabelValues>) -> BTreeMap<String, Vec<String>> {
    v.map(|lv| lv.values.iter().map(|(k, sv)| (k.clone(), sv.values.clone())).collect())
        .unwrap_or_default()
}

fn labels_to_pb(m: &BTreeMap<String, Vec<String>>) -> Option<wrappers::LabelValues> {
    Some(wrappers::LabelValues {
        values: m
            .iter()
            .map(|(k, v)| (k.clone(), wrappers::StringValues { values: v.clone() }))
            .collect(),
    })
}

fn review_from_pb(r: &types::AccessReview) -> Review {
    Review {
        author: r.author.clone(),
        roles: r.roles.clone(),
        proposed_state: state_from_pb(r.proposed_state),
        reason: r.reason.clone(),
        created: time_from_pb(r.created.as_ref()),
    }
}

fn review_to_pb(r: &Review) -> types::AccessReview {
    types::AccessReview {
        author: r.author.clone(),
        roles: r.roles.clone(),
        proposed_state: state_to_pb(r.proposed_state),
        reason: r.reason.clone(),
        created: r.created.map(time_to_pb),
        annotations: Some(wrappers::LabelValues::default()),
        ..Default::default()
    }
}

pub fn review_from_submission(r: &types::AccessReview) -> Review {
    review_from_pb(r)
}

pub fn review_into_pb(r: &Review) -> types::AccessReview {
    review_to_pb(r)
}

fn resource_id_from_pb(id: types::ResourceId) -> ResourceId {
    ResourceId { cluster: id.cluster_name, kind: id.kind, name: id.name, sub_resource: id.sub_resource_name }
}

fn resource_id_to_pb(id: &ResourceId) -> types::ResourceId {
    types::ResourceId {
        cluster_name: id.cluster.clone(),
        kind: id.kind.clone(),
        name: id.name.clone(),
        sub_resource_name: id.sub_resource.clone(),
    }
}

/// An entry of `RequestedResourceAccessIDs`. Teleport keeps unconstrained
/// resources in `RequestedResourceIDs`, so an entry here without constraints
/// (not written by current Auth) is kept as constrained by nothing known.
fn constrained_from_pb(r: types::ResourceAccessId) -> ConstrainedResource {
    use types::resource_constraints::Details;
    let constraints = match r.constraints.and_then(|c| c.details) {
        Some(Details::Ssh(s)) => ResourceConstraints::SshLogins(s.logins),
        Some(Details::AwsConsole(a)) => ResourceConstraints::AwsConsoleRoleArns(a.role_arns),
        None => ResourceConstraints::Unrecognized,
    };
    ConstrainedResource { id: resource_id_from_pb(r.id.unwrap_or_default()), constraints }
}

fn constrained_to_pb(r: &ConstrainedResource) -> types::ResourceAccessId {
    use types::resource_constraints::Details;
    let details = match &r.constraints {
        ResourceConstraints::SshLogins(v) => Some(Details::Ssh(types::SshResourceConstraints { logins: v.clone() })),
        ResourceConstraints::AwsConsoleRoleArns(v) => {
            Some(Details::AwsConsole(types::AwsConsoleResourceConstraints { role_arns: v.clone() }))
        }
        ResourceConstraints::Unrecognized => None,
    };
    types::ResourceAccessId {
        id: Some(resource_id_to_pb(&r.id)),
        constraints: Some(types::ResourceConstraints { version: "v1".into(), details }),
    }
}

fn threshold_from_pb(t: &types::AccessReviewThreshold) -> Threshold {
    Threshold { name: t.name.clone(), filter: t.filter.clone(), approve: t.approve, deny: t.deny }
}

fn threshold_to_pb(t: &Threshold) -> types::AccessReviewThreshold {
    types::AccessReviewThreshold { name: t.name.clone(), filter: t.filter.clone(), approve: t.approve, deny: t.deny }
}

pub fn request_from_pb(r: &types::AccessRequestV3) -> AccessRequest {
    let meta = r.metadata.clone().unwrap_or_default();
    let spec = r.spec.clone().unwrap_or_default();
    AccessRequest {
        id: meta.name,
        user: spec.user,
        roles: spec.roles,
        state: state_from_pb(spec.state),
        created: time_from_pb(spec.created.as_ref()),
        // The request's TTL is its resource expiry; `Spec.Expires` is when
        // the access it grants would end (upstream's `GetAccessExpiry`).
        expires: time_from_pb(meta.expires.as_ref()),
        request_reason: spec.request_reason,
        resolve_reason: spec.resolve_reason,
        system_annotations: labels_from_pb(spec.system_annotations.as_ref()),
        labels: meta.labels.into_iter().collect(),
        reviews: spec.reviews.iter().map(review_from_pb).collect(),
        suggested_reviewers: spec.suggested_reviewers,
        resources: spec.requested_resource_i_ds.into_iter().map(resource_id_from_pb).collect(),
        constrained_resources: spec.requested_resource_access_i_ds.into_iter().map(constrained_from_pb).collect(),
        max_duration: time_from_pb(spec.max_duration.as_ref()),
        long_term: spec.request_kind == types::AccessRequestKind::LongTerm as i32,
        promoted_to: spec.access_list.map(|l| if l.title.is_empty() { l.name } else { l.title }),
        thresholds: spec.thresholds.iter().map(threshold_from_pb).collect(),
        role_thresholds: spec
            .role_threshold_mapping
            .into_iter()
            .map(|(role, s)| (role, s.sets.into_iter().map(|set| set.indexes).collect()))
            .collect(),
        review_thresholds: spec.reviews.iter().map(|r| (r.author.clone(), r.threshold_indexes.clone())).collect(),
    }
}

/// Encodes a request the way Teleport does, including Go's always-present
/// zero timestamps for unset non-null fields.
pub fn request_to_pb(r: &AccessRequest) -> types::AccessRequestV3 {
    let go_zero = prost_types::Timestamp { seconds: GO_ZERO_TIME_SECS, nanos: 0 };
    let ts_or_zero = |t: Option<SystemTime>| Some(t.map(time_to_pb).unwrap_or(go_zero));
    types::AccessRequestV3 {
        kind: "access_request".into(),
        sub_kind: String::new(),
        version: "v3".into(),
        metadata: Some(types::Metadata {
            name: r.id.clone(),
            namespace: "default".into(),
            labels: r.labels.clone().into_iter().collect(),
            expires: r.expires.map(time_to_pb),
            ..Default::default()
        }),
        spec: Some(types::AccessRequestSpecV3 {
            user: r.user.clone(),
            roles: r.roles.clone(),
            state: state_to_pb(r.state),
            created: ts_or_zero(r.created),
            expires: ts_or_zero(r.expires),
            request_reason: r.request_reason.clone(),
            resolve_reason: r.resolve_reason.clone(),
            resolve_annotations: Some(wrappers::LabelValues::default()),
            system_annotations: labels_to_pb(&r.system_annotations),
            reviews: r
                .reviews
                .iter()
                .map(|rev| types::AccessReview {
                    threshold_indexes: r.review_thresholds.get(&rev.author).cloned().unwrap_or_default(),
                    ..review_to_pb(rev)
                })
                .collect(),
            thresholds: r.thresholds.iter().map(threshold_to_pb).collect(),
            role_threshold_mapping: r
                .role_thresholds
                .iter()
                .map(|(role, sets)| {
                    let sets = sets.iter().map(|i| types::ThresholdIndexSet { indexes: i.clone() }).collect();
                    (role.clone(), types::ThresholdIndexSets { sets })
                })
                .collect(),
            suggested_reviewers: r.suggested_reviewers.clone(),
            requested_resource_i_ds: r.resources.iter().map(resource_id_to_pb).collect(),
            requested_resource_access_i_ds: r.constrained_resources.iter().map(constrained_to_pb).collect(),
            max_duration: ts_or_zero(r.max_duration),
            session_ttl: Some(go_zero),
            access_list: r
                .promoted_to
                .as_ref()
                .map(|t| types::PromotedAccessList { name: t.clone(), title: t.clone() }),
            request_kind: if r.long_term {
                types::AccessRequestKind::LongTerm as i32
            } else {
                types::AccessRequestKind::Undefined as i32
            },
            ..Default::default()
        }),
    }
}

pub fn rule_from_pb(r: &amr::AccessMonitoringRule) -> MonitoringRule {
    let spec = r.spec.clone().unwrap_or_default();
    let notification = spec.notification.unwrap_or_default();
    MonitoringRule {
        name: r.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
        subjects: spec.subjects,
        condition: spec.condition,
        notification_name: notification.name,
        recipients: notification.recipients,
        schedules: spec
            .schedules
            .into_iter()
            .map(|(name, s)| {
                let schedule = match s.time {
                    None => Schedule { timezone: None, shifts: Vec::new() },
                    Some(t) => Schedule {
                        timezone: Some(t.timezone),
                        shifts: t
                            .shifts
                            .into_iter()
                            .map(|x| Shift { weekday: x.weekday, start: x.start, end: x.end })
                            .collect(),
                    },
                };
                (name, schedule)
            })
            .collect(),
    }
}

pub fn rule_to_pb(r: &MonitoringRule) -> amr::AccessMonitoringRule {
    amr::AccessMonitoringRule {
        metadata: Some(header::Metadata { name: r.name.clone(), namespace: "default".into(), ..Default::default() }),
        kind: "access_monitoring_rule".into(),
        sub_kind: String::new(),
        version: "v1".into(),
        spec: Some(amr::AccessMonitoringRuleSpec {
            subjects: r.subjects.clone(),
            states: Vec::new(),
            condition: r.condition.clone(),
            notification: Some(amr::Notification {
                name: r.notification_name.clone(),
                recipients: r.recipients.clone(),
            }),
            schedules: r
                .schedules
                .iter()
                .map(|(name, s)| {
                    let time = s.timezone.as_ref().map(|tz| amr::TimeSchedule {
                        timezone: tz.clone(),
                        shifts: s
                            .shifts
                            .iter()
                            .map(|x| amr::time_schedule::Shift {
                                weekday: x.weekday.clone(),
                                start: x.start.clone(),
                                end: x.end.clone(),
                            })
                            .collect(),
                    });
                    (name.clone(), amr::Schedule { time })
                })
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_zero_time_and_absence_are_unset() {
        assert_eq!(time_from_pb(None), None);
        let zero = prost_types::Timestamp { seconds: GO_ZERO_TIME_SECS, nanos: 0 };
        assert_eq!(time_from_pb(Some(&zero)), None);
        let t = prost_types::Timestamp { seconds: 1_700_000_000, nanos: 5 };
        assert_eq!(time_from_pb(Some(&t)), Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)));
        let bad = prost_types::Timestamp { seconds: 1, nanos: -3 };
        assert_eq!(time_from_pb(Some(&bad)), None);
    }

    #[test]
    fn request_round_trips_through_pb() {
        let mut r = AccessRequest::new_pending("abc", "alice@example.com", vec!["editor".into()]);
        r.created = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        r.request_reason = "deploy".into();
        r.long_term = true;
        r.system_annotations.insert("team".into(), vec!["a".into(), "b".into()]);
        r.resources.push(ResourceId {
            cluster: "c".into(),
            kind: "node".into(),
            name: "n1".into(),
            sub_resource: String::new(),
        });
        r.constrained_resources.push(ConstrainedResource {
            id: ResourceId { cluster: "c".into(), kind: "node".into(), name: "n2".into(), sub_resource: String::new() },
            constraints: ResourceConstraints::SshLogins(vec!["root".into(), "admin".into()]),
        });
        r.constrained_resources.push(ConstrainedResource {
            id: ResourceId { cluster: "c".into(), kind: "app".into(), name: "aws".into(), sub_resource: String::new() },
            constraints: ResourceConstraints::AwsConsoleRoleArns(vec!["arn:aws:iam::1:role/ro".into()]),
        });
        r.reviews.push(Review {
            author: "bob".into(),
            roles: vec!["reviewer".into()],
            proposed_state: RequestState::Approved,
            reason: "ok".into(),
            created: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_100)),
        });
        r.thresholds = vec![
            Threshold { name: "default".into(), filter: String::new(), approve: 1, deny: 1 },
            Threshold { name: "two".into(), filter: r#"contains(reviewer.roles, "x")"#.into(), approve: 2, deny: 0 },
        ];
        r.role_thresholds.insert("editor".into(), vec![vec![0, 1], vec![1]]);
        r.review_thresholds.insert("bob".into(), vec![0, 1]);
        assert_eq!(request_from_pb(&request_to_pb(&r)), r);
    }
}
