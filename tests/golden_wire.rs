//! Golden-byte tests: protobuf messages written by hand from the field tables
//! of Teleport's wire format, decoded by our generated code. A wrong field
//! number in `proto/` would decode as an unknown field and leave a value
//! empty, failing these tests instead of failing silently in production.

use std::time::{Duration, UNIX_EPOCH};

use prost::Message;
use teleport_plugin::model::RequestState;
use teleport_plugin::pb::proto;
use teleport_plugin::pb::teleport::accessmonitoringrules::v1 as amr;
use teleport_plugin::pb::teleport::users::v1 as users;
use teleport_plugin::pb::types;
use teleport_plugin::teleport::convert::request_from_pb;
use teleport_plugin::teleport::watch::{Feed, decode_event};

/// A tiny protobuf writer, independent of prost.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn varint(&mut self, mut v: u64) -> &mut Self {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return self;
            }
            self.0.push(b | 0x80);
        }
    }
    fn tag(&mut self, field: u32, wire_type: u8) -> &mut Self {
        self.varint(((field as u64) << 3) | wire_type as u64)
    }
    fn uint(&mut self, field: u32, v: u64) -> &mut Self {
        self.tag(field, 0).varint(v)
    }
    fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.tag(field, 2).varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(&mut self, field: u32, f: impl FnOnce(&mut W)) -> &mut Self {
        let mut inner = W::default();
        f(&mut inner);
        self.bytes(field, &inner.0)
    }
    fn map_str(&mut self, field: u32, k: &str, v: &str) -> &mut Self {
        self.msg(field, |e| {
            e.str(1, k).str(2, v);
        })
    }
    fn ts(&mut self, field: u32, secs: u64) -> &mut Self {
        self.msg(field, |t| {
            t.uint(1, secs);
        })
    }
}

fn access_request_bytes() -> Vec<u8> {
    let mut w = W::default();
    w.str(1, "access_request").str(3, "v3");
    w.msg(4, |m| {
        // The request's own expiry (its TTL), distinct from the access expiry below.
        m.str(1, "req-1").str(2, "default").map_str(5, "env", "prod").ts(6, 1_700_003_600);
    });
    w.msg(5, |s| {
        s.str(1, "alice@example.com");
        s.str(2, "editor").str(2, "auditor");
        s.uint(3, 1); // PENDING
        s.ts(4, 1_700_000_000);
        s.ts(5, 1_700_108_000); // Spec.Expires: when the granted access would end
        s.str(6, "deploy hotfix");
        s.str(7, "resolved because");
        s.msg(9, |a| {
            a.msg(1, |e| {
                e.str(1, "team").msg(2, |sv| {
                    sv.str(1, "payments").str(1, "core");
                });
            });
        });
        s.msg(12, |r| {
            r.str(1, "bob").str(2, "reviewer").uint(3, 2).str(4, "ok by me").ts(5, 1_700_000_100);
        });
        s.str(13, "carol@example.com");
        s.msg(14, |id| {
            id.str(1, "sim").str(2, "node").str(3, "web-1").str(4, "sub");
        });
        s.ts(17, 1_700_086_400);
        s.msg(20, |l| {
            l.str(1, "list-1").str(2, "On-call list");
        });
        s.uint(24, 2); // LONG_TERM
    });
    w.0
}

#[test]
fn access_request_fields_decode_at_their_numbers() {
    let pb = types::AccessRequestV3::decode(&access_request_bytes()[..]).unwrap();
    assert_eq!(pb.kind, "access_request");
    let r = request_from_pb(&pb);
    assert_eq!(r.id, "req-1");
    assert_eq!(r.labels.get("env").map(String::as_str), Some("prod"));
    assert_eq!(r.user, "alice@example.com");
    assert_eq!(r.roles, vec!["editor", "auditor"]);
    assert_eq!(r.state, RequestState::Pending);
    assert_eq!(r.created, Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
    assert_eq!(r.expires, Some(UNIX_EPOCH + Duration::from_secs(1_700_003_600)));
    assert_eq!(r.request_reason, "deploy hotfix");
    assert_eq!(r.resolve_reason, "resolved because");
    assert_eq!(r.system_annotations["team"], vec!["payments", "core"]);
    assert_eq!(r.reviews.len(), 1);
    assert_eq!(r.reviews[0].author, "bob");
    assert_eq!(r.reviews[0].roles, vec!["reviewer"]);
    assert_eq!(r.reviews[0].proposed_state, RequestState::Approved);
    assert_eq!(r.reviews[0].reason, "ok by me");
    assert_eq!(r.reviews[0].created, Some(UNIX_EPOCH + Duration::from_secs(1_700_000_100)));
    assert_eq!(r.suggested_reviewers, vec!["carol@example.com"]);
    assert_eq!(r.resources.len(), 1);
    assert_eq!(r.resources[0].to_string(), "/sim/node/web-1/sub");
    assert_eq!(r.max_duration, Some(UNIX_EPOCH + Duration::from_secs(1_700_086_400)));
    assert_eq!(r.promoted_to.as_deref(), Some("On-call list"));
    assert!(r.long_term);
}

#[test]
fn constrained_resources_decode_from_field_26() {
    let mut w = W::default();
    w.msg(5, |s| {
        s.msg(14, |id| {
            id.str(1, "sim").str(2, "db").str(3, "pg");
        });
        // ResourceAccessID{id = 1, constraints = 2{version = 1, ssh = 11{logins = 1}}}
        s.msg(26, |a| {
            a.msg(1, |id| {
                id.str(1, "sim").str(2, "node").str(3, "web-1");
            });
            a.msg(2, |c| {
                c.str(1, "v1").msg(11, |ssh| {
                    ssh.str(1, "root").str(1, "admin");
                });
            });
        });
        // ... and aws_console = 10{role_arns = 1}.
        s.msg(26, |a| {
            a.msg(1, |id| {
                id.str(1, "sim").str(2, "app").str(3, "aws").str(4, "sub");
            });
            a.msg(2, |c| {
                c.str(1, "v1").msg(10, |aws| {
                    aws.str(1, "arn:aws:iam::1:role/ro");
                });
            });
        });
        // A constraint kind newer than this build: the resource is still shown.
        s.msg(26, |a| {
            a.msg(1, |id| {
                id.str(1, "sim").str(2, "windows_desktop").str(3, "dc1");
            });
            a.msg(2, |c| {
                c.str(1, "v1").msg(12, |x| {
                    x.str(1, "Administrator");
                });
            });
        });
    });
    let r = request_from_pb(&types::AccessRequestV3::decode(&w.0[..]).unwrap());
    let shown: Vec<String> = r.requested_resources().map(|x| x.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "/sim/db/pg",
            "/sim/node/web-1 (logins=root,admin)",
            "/sim/app/aws/sub (role_arns=arn:aws:iam::1:role/ro)",
            "/sim/windows_desktop/dc1 (constraints not shown)",
        ]
    );
}

#[test]
fn request_states_use_teleports_enum_values() {
    for (v, s) in [(1, RequestState::Pending), (2, RequestState::Approved), (3, RequestState::Denied), (4, RequestState::Promoted)] {
        let mut w = W::default();
        w.msg(5, |spec| {
            spec.uint(3, v);
        });
        let r = request_from_pb(&types::AccessRequestV3::decode(&w.0[..]).unwrap());
        assert_eq!(r.state, s);
    }
}

#[test]
fn put_event_carries_the_request_at_field_14() {
    let mut w = W::default();
    w.uint(1, 1); // PUT
    w.bytes(14, &access_request_bytes());
    let ev = proto::Event::decode(&w.0[..]).unwrap();
    match decode_event(ev) {
        Some(Feed::Put(r)) => assert_eq!(r.id, "req-1"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn init_event_has_no_type_and_a_watch_status_at_43() {
    let mut w = W::default();
    w.msg(43, |ws| {
        ws.str(1, "watch_status").msg(5, |spec| {
            spec.msg(1, |k| {
                k.str(1, "access_request");
            });
            spec.msg(1, |k| {
                k.str(1, "access_monitoring_rule");
            });
        });
    });
    let ev = proto::Event::decode(&w.0[..]).unwrap();
    assert_eq!(ev.r#type, proto::Operation::Init as i32);
    let Some(proto::event::Resource::WatchStatus(ws)) = ev.resource else { panic!("no watch status") };
    let kinds: Vec<_> = ws.spec.unwrap().kinds.into_iter().map(|k| k.kind).collect();
    assert_eq!(kinds, vec!["access_request", "access_monitoring_rule"]);
}

#[test]
fn delete_event_is_a_resource_header_at_field_2() {
    let mut w = W::default();
    w.uint(1, 2); // DELETE
    w.msg(2, |h| {
        h.str(1, "access_request").str(3, "v3").msg(4, |m| {
            m.str(1, "req-9").str(2, "default");
        });
    });
    let ev = proto::Event::decode(&w.0[..]).unwrap();
    assert_eq!(decode_event(ev), Some(Feed::Deleted("req-9".into())));
}

#[test]
fn monitoring_rule_event_at_field_54() {
    let mut w = W::default();
    w.uint(1, 1);
    w.msg(54, |r| {
        r.msg(1, |m| {
            m.str(1, "route-dev");
        });
        r.str(2, "access_monitoring_rule").str(4, "v1");
        r.msg(5, |s| {
            s.str(1, "access_request");
            s.str(3, r#"contains(access_request.spec.roles, "dev")"#);
            s.msg(4, |n| {
                n.str(1, "slack").str(2, "#dev").str(2, "dev-lead@example.com");
            });
        });
    });
    match decode_event(proto::Event::decode(&w.0[..]).unwrap()) {
        Some(Feed::RulePut(rule)) => {
            assert_eq!(rule.name, "route-dev");
            assert_eq!(rule.subjects, vec!["access_request"]);
            assert_eq!(rule.condition, r#"contains(access_request.spec.roles, "dev")"#);
            assert_eq!(rule.notification_name, "slack");
            assert_eq!(rule.recipients, vec!["#dev", "dev-lead@example.com"]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn monitoring_rule_schedules_decode_from_field_8() {
    let mut w = W::default();
    w.uint(1, 1);
    w.msg(54, |r| {
        r.msg(1, |m| {
            m.str(1, "office-hours");
        });
        r.msg(5, |s| {
            s.str(1, "access_request").str(3, "true");
            s.msg(4, |n| {
                n.str(1, "slack").str(2, "#office");
            });
            // map<string, Schedule> schedules = 8: entry{key = 1, value = 2}
            s.msg(8, |e| {
                e.str(1, "weekdays").msg(2, |sched| {
                    // Schedule.time = 1: TimeSchedule{shifts = 1, timezone = 2}
                    sched.msg(1, |t| {
                        t.msg(1, |sh| {
                            sh.str(1, "Monday").str(2, "09:00").str(3, "17:00");
                        });
                        t.msg(1, |sh| {
                            sh.str(1, "Tuesday").str(2, "10:00").str(3, "12:30");
                        });
                        t.str(2, "America/Los_Angeles");
                    });
                });
            });
        });
    });
    let Some(Feed::RulePut(rule)) = decode_event(proto::Event::decode(&w.0[..]).unwrap()) else { panic!("not a rule put") };
    let s = &rule.schedules["weekdays"];
    assert_eq!(s.timezone.as_deref(), Some("America/Los_Angeles"));
    let shifts: Vec<(&str, &str, &str)> = s.shifts.iter().map(|x| (&*x.weekday, &*x.start, &*x.end)).collect();
    assert_eq!(shifts, vec![("Monday", "09:00", "17:00"), ("Tuesday", "10:00", "12:30")]);
}

#[test]
fn get_user_request_and_traits() {
    let req = proto::GetUserRequest { name: "alice@example.com".into(), with_secrets: false };
    let mut w = W::default();
    w.str(1, "alice@example.com");
    assert_eq!(req.encode_to_vec(), w.0);
    let with = proto::GetUserRequest { name: "a".into(), with_secrets: true };
    let mut w = W::default();
    w.str(1, "a").uint(2, 1);
    assert_eq!(with.encode_to_vec(), w.0);

    // types.UserV2{Kind = 1, Version = 3, Metadata = 4, Spec = 5{Traits = 5}}
    let mut w = W::default();
    w.str(1, "user").str(3, "v2");
    w.msg(4, |m| {
        m.str(1, "alice@example.com");
    });
    w.msg(5, |spec| {
        spec.str(4, "access").str(4, "reviewer"); // Roles = 4
        spec.msg(5, |t| {
            t.msg(1, |e| {
                e.str(1, "team").msg(2, |sv| {
                    sv.str(1, "payments").str(1, "core");
                });
            });
        });
    });
    let user = types::UserV2::decode(&w.0[..]).unwrap();
    let spec = user.spec.unwrap();
    assert_eq!(spec.roles, vec!["access", "reviewer"]);
    let traits = spec.traits.unwrap();
    assert_eq!(traits.values["team"].values, vec!["payments", "core"]);
}

#[test]
fn users_service_requests_encode_at_their_numbers() {
    // ListUsersRequest{page_size = 1, page_token = 2, with_secrets = 3,
    // filter = 4: UserFilter{SearchKeywords = 1, Traits = 2: LabelValues}}
    let req = users::ListUsersRequest {
        page_size: 500,
        page_token: "bob".into(),
        with_secrets: true,
        filter: Some(types::UserFilter {
            search_keywords: vec!["kw".into()],
            traits: Some(teleport_plugin::pb::wrappers::LabelValues {
                values: [(
                    "slack_user_id".to_string(),
                    teleport_plugin::pb::wrappers::StringValues { values: vec!["U1".into()] },
                )]
                .into(),
            }),
        }),
    };
    let mut w = W::default();
    w.uint(1, 500).str(2, "bob").uint(3, 1).msg(4, |f| {
        f.str(1, "kw").msg(2, |lv| {
            lv.msg(1, |e| {
                e.str(1, "slack_user_id").msg(2, |sv| {
                    sv.str(1, "U1");
                });
            });
        });
    });
    assert_eq!(req.encode_to_vec(), w.0);

    // GetUserRequest{name = 1, current_user = 2, with_secrets = 3}
    let get = users::GetUserRequest { name: "alice".into(), current_user: true, with_secrets: true };
    let mut w = W::default();
    w.str(1, "alice").uint(2, 1).uint(3, 1);
    assert_eq!(get.encode_to_vec(), w.0);
}

#[test]
fn users_service_responses_decode_at_their_numbers() {
    let user = |w: &mut W, name: &str| {
        w.msg(1, |u| {
            u.str(1, "user").msg(4, |m| {
                m.str(1, name);
            });
        });
    };
    // ListUsersResponse{users = 1, next_page_token = 2}
    let mut w = W::default();
    user(&mut w, "alice");
    user(&mut w, "bob");
    w.str(2, "carol");
    let page = users::ListUsersResponse::decode(&w.0[..]).unwrap();
    let names: Vec<_> = page.users.iter().map(|u| u.metadata.as_ref().unwrap().name.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(page.next_page_token, "carol");
    // GetUserResponse{user = 1}
    let mut w = W::default();
    user(&mut w, "dave");
    let got = users::GetUserResponse::decode(&w.0[..]).unwrap();
    assert_eq!(got.user.unwrap().metadata.unwrap().name, "dave");
}

#[test]
fn on_behalf_review_submission_encodes_fields_11_and_12() {
    let sub = types::AccessReviewSubmission {
        request_id: "req-1".into(),
        review: Some(types::AccessReview {
            author: "bob".into(),
            proposed_state: 3,
            reason: "from chat".into(),
            created: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            submitted_by: "access-plugin".into(),
            submitted_on_behalf_of_author: true,
            ..Default::default()
        }),
    };
    let mut w = W::default();
    w.str(1, "req-1").msg(2, |r| {
        r.str(1, "bob").uint(3, 3).str(4, "from chat").ts(5, 1_700_000_000);
        r.str(11, "access-plugin").uint(12, 1);
    });
    let bytes = sub.encode_to_vec();
    assert_eq!(bytes, w.0);
    // The key bytes the wire notes give: SubmittedBy 0x5A, the flag 0x60.
    assert!(bytes.windows(2).any(|b| b == [0x5A, 13]) && bytes.ends_with(&[0x60, 0x01]));
}

#[test]
fn thresholds_mapping_and_review_indexes_decode_at_their_numbers() {
    let mut w = W::default();
    w.str(1, "access_request").str(3, "v3");
    w.msg(4, |m| {
        m.str(1, "req-2");
    });
    w.msg(5, |s| {
        s.str(1, "alice").str(2, "editor").uint(3, 1);
        // Thresholds = 10: {Name = 1, Filter = 2, Approve = 3, Deny = 4}
        s.msg(10, |t| {
            t.str(1, "default").uint(3, 1).uint(4, 1);
        });
        s.msg(10, |t| {
            t.str(1, "two").str(2, "contains(reviewer.roles, \"sre\")").uint(3, 2).uint(4, 1);
        });
        // RoleThresholdMapping = 11: map entry {key = 1, value = 2:
        // ThresholdIndexSets{Sets = 1: ThresholdIndexSet{Indexes = 1 (packed)}}}
        s.msg(11, |e| {
            e.str(1, "editor").msg(2, |sets| {
                sets.msg(1, |set| {
                    set.bytes(1, &[0, 1]);
                });
                sets.msg(1, |set| {
                    set.bytes(1, &[1]);
                });
            });
        });
        // Reviews = 12, ThresholdIndexes = 7 (packed)
        s.msg(12, |r| {
            r.str(1, "bob").uint(3, 2).bytes(7, &[0, 1]);
        });
    });
    let r = request_from_pb(&types::AccessRequestV3::decode(&w.0[..]).unwrap());
    assert_eq!(r.thresholds.len(), 2);
    assert_eq!((r.thresholds[1].name.as_str(), r.thresholds[1].approve, r.thresholds[1].deny), ("two", 2, 1));
    assert_eq!(r.thresholds[1].filter, "contains(reviewer.roles, \"sre\")");
    assert_eq!(r.role_thresholds["editor"], vec![vec![0, 1], vec![1]]);
    assert_eq!(r.review_thresholds["bob"], vec![0, 1]);
    assert_eq!(r.approvals_needed(), 1, "t1 needs a second approval");
}

#[test]
fn plugin_data_seq_decodes() {
    let mut w = W::default();
    w.msg(1, |pd| {
        pd.str(1, "plugin_data").str(2, "access_request").str(3, "v3");
        pd.msg(4, |m| {
            m.str(1, "req-1");
        });
        pd.msg(5, |spec| {
            spec.msg(1, |entry| {
                entry.str(1, "slack").msg(2, |data| {
                    data.map_str(1, "messages", "C1/123.456");
                });
            });
        });
    });
    let seq = proto::PluginDataSeq::decode(&w.0[..]).unwrap();
    let pd = &seq.plugin_data[0];
    assert_eq!(pd.sub_kind, "access_request");
    assert_eq!(pd.metadata.as_ref().unwrap().name, "req-1");
    assert_eq!(pd.spec.as_ref().unwrap().entries["slack"].data["messages"], "C1/123.456");
}

#[test]
fn plugin_data_update_encodes_to_the_expected_bytes() {
    let params = types::PluginDataUpdateParams {
        kind: "access_request".into(),
        resource: "req-1".into(),
        plugin: "slack".into(),
        set: [("user".to_string(), "alice".to_string())].into(),
        expect: [("user".to_string(), String::new())].into(),
    };
    let mut w = W::default();
    w.str(1, "access_request").str(2, "req-1").str(3, "slack").map_str(4, "user", "alice");
    // prost omits an empty map value; the key alone still encodes "expect empty".
    w.msg(5, |e| {
        e.str(1, "user");
    });
    assert_eq!(params.encode_to_vec(), w.0);
    let filter = types::PluginDataFilter { kind: "access_request".into(), resource: "r".into(), plugin: "p".into() };
    let mut w = W::default();
    w.str(1, "access_request").str(2, "r").str(3, "p");
    assert_eq!(filter.encode_to_vec(), w.0);
}

#[test]
fn watch_request_encodes_kinds_and_partial_success() {
    let watch = proto::Watch {
        kinds: vec![types::WatchKind { kind: "access_request".into(), ..Default::default() }],
        allow_partial_success: true,
    };
    let mut w = W::default();
    w.msg(1, |k| {
        k.str(1, "access_request");
    });
    w.uint(2, 1);
    assert_eq!(watch.encode_to_vec(), w.0);
}

#[test]
fn ping_response_decodes() {
    let mut w = W::default();
    w.str(1, "example.com").str(2, "17.1.2");
    w.msg(3, |f| {
        f.uint(7, 1).uint(36, 1);
    });
    w.str(4, "teleport.example.com:443");
    let p = proto::PingResponse::decode(&w.0[..]).unwrap();
    assert_eq!(p.cluster_name, "example.com");
    assert_eq!(p.server_version, "17.1.2");
    assert!(p.server_features.as_ref().unwrap().advanced_access_workflows);
    assert!(p.server_features.as_ref().unwrap().access_monitoring_configured);
    assert_eq!(p.proxy_public_addr, "teleport.example.com:443");
}

#[test]
fn list_requests_page_fields() {
    let req = proto::ListAccessRequestsRequest {
        filter: Some(types::AccessRequestFilter { state: 1, ..Default::default() }),
        limit: 500,
        start_key: "k".into(),
        ..Default::default()
    };
    let mut w = W::default();
    w.msg(1, |f| {
        f.uint(3, 1);
    });
    w.uint(4, 500).str(5, "k");
    assert_eq!(req.encode_to_vec(), w.0);

    // The catch-up's bulk plugin-data read names no resource (field 2 absent).
    let all = types::PluginDataFilter { kind: "access_request".into(), resource: String::new(), plugin: "slack".into() };
    let mut w = W::default();
    w.str(1, "access_request").str(3, "slack");
    assert_eq!(all.encode_to_vec(), w.0);

    // The look-up by id that confirms a request is gone.
    let by_id = proto::ListAccessRequestsRequest {
        filter: Some(types::AccessRequestFilter { id: "req-1".into(), ..Default::default() }),
        limit: 1,
        ..Default::default()
    };
    let mut w = W::default();
    w.msg(1, |f| {
        f.str(1, "req-1");
    });
    w.uint(4, 1);
    assert_eq!(by_id.encode_to_vec(), w.0);

    let mut w = W::default();
    w.bytes(1, &access_request_bytes()).str(2, "next");
    let resp = proto::ListAccessRequestsResponse::decode(&w.0[..]).unwrap();
    assert_eq!(resp.access_requests.len(), 1);
    assert_eq!(resp.next_key, "next");
}

#[test]
fn role_logins_decode() {
    let mut w = W::default();
    w.str(1, "role").str(3, "v7");
    w.msg(5, |s| {
        s.msg(2, |allow| {
            allow.str(1, "root").str(1, "ubuntu");
        });
    });
    let role = types::RoleV6::decode(&w.0[..]).unwrap();
    assert_eq!(role.spec.unwrap().allow.unwrap().logins, vec!["root", "ubuntu"]);
}

#[test]
fn monitoring_rule_filter_request_encodes() {
    let req = amr::ListAccessMonitoringRulesWithFilterRequest {
        page_size: 1000,
        page_token: "t".into(),
        subjects: vec!["access_request".into()],
        notification_name: "slack".into(),
    };
    let mut w = W::default();
    w.uint(1, 1000).str(2, "t").str(3, "access_request").str(4, "slack");
    assert_eq!(req.encode_to_vec(), w.0);
}

#[test]
fn review_submission_encodes() {
    let sub = types::AccessReviewSubmission {
        request_id: "req-1".into(),
        review: Some(types::AccessReview { author: "plugin".into(), proposed_state: 2, ..Default::default() }),
    };
    let mut w = W::default();
    w.str(1, "req-1").msg(2, |r| {
        r.str(1, "plugin").uint(3, 2);
    });
    assert_eq!(sub.encode_to_vec(), w.0);
}

/// `proto.ListResourcesRequest` as the plugin sends it for the labels of
/// requested nodes: ResourceType = 1, Limit = 3, StartKey = 4,
/// PredicateExpression = 6, UsePreviewAsRoles = 12.
#[test]
fn list_resources_request_encodes() {
    use teleport_plugin::teleport::resources::list_requests;
    let names = ["web-1", "web-2"].into_iter().collect();
    let mut req = list_requests("node", &names).remove(0);
    let expr = r#"resource.metadata.name == "web-1" || resource.metadata.name == "web-2""#;
    let mut w = W::default();
    w.str(1, "node").uint(3, 2).str(6, expr).uint(12, 1);
    assert_eq!(req.encode_to_vec(), w.0);
    req.start_key = "web-2".into();
    let mut w = W::default();
    w.str(1, "node").uint(3, 2).str(4, "web-2").str(6, expr).uint(12, 1);
    assert_eq!(req.encode_to_vec(), w.0);
}

/// `proto.ListResourcesResponse{Resources = 1, NextKey = 2}` with one of each
/// `PaginatedResource` the plugin reads: DatabaseServer = 1, AppServer = 2,
/// Node = 3 (WindowsDesktop = 5 is not read). Labels are `Metadata.Labels`
/// (5) plus the `Result` (3) of each `CommandLabelV2`: a node's
/// `ServerSpecV2.CmdLabels` (4); an app server's `AppServerSpecV3.App` (5)
/// with `AppSpecV3.DynamicLabels` (3); a database server's
/// `DatabaseServerSpecV3.Database` (12) with `DatabaseSpecV3.DynamicLabels` (4).
#[test]
fn list_resources_response_labels_decode() {
    use teleport_plugin::teleport::resources::labels_of;
    fn command_label(w: &mut W, field: u32, key: &str, result: &str) {
        w.msg(field, |e| {
            e.str(1, key).msg(2, |c| {
                c.uint(1, 60_000_000_000).str(2, "uname").str(2, "-r").str(3, result);
            });
        });
    }
    let mut w = W::default();
    w.msg(1, |r| {
        r.msg(3, |n| {
            n.str(1, "node").str(3, "v2");
            n.msg(4, |m| {
                m.str(1, "web-1").map_str(5, "env", "dev").map_str(5, "team", "payments");
            });
            n.msg(5, |s| {
                s.str(1, "10.0.0.1:3022").str(3, "web-1.internal");
                command_label(s, 4, "env", "prod");
            });
        });
    });
    w.msg(1, |r| {
        r.msg(2, |a| {
            a.str(1, "app_server").str(3, "v3");
            a.msg(4, |m| {
                m.str(1, "grafana").map_str(5, "agent-label", "not the app's");
            });
            a.msg(5, |s| {
                s.str(1, "17.4.2").str(2, "agent-1").str(3, "host-uuid");
                s.msg(5, |app| {
                    app.str(1, "app").str(3, "v3");
                    app.msg(4, |m| {
                        m.str(1, "grafana").map_str(5, "team", "obs");
                    });
                    app.msg(5, |spec| {
                        spec.str(1, "http://grafana:3000");
                        command_label(spec, 3, "zone", "b");
                    });
                });
            });
        });
    });
    w.msg(1, |r| {
        r.msg(1, |d| {
            d.str(1, "db_server").str(3, "v3");
            d.msg(5, |s| {
                s.str(6, "17.4.2").str(7, "agent-2").str(8, "host-uuid-2");
                s.msg(12, |db| {
                    db.str(1, "db").str(3, "v3");
                    db.msg(4, |m| {
                        m.str(1, "orders").map_str(5, "engine", "pg");
                    });
                    db.msg(5, |spec| {
                        spec.str(1, "postgres").str(2, "orders:5432");
                        command_label(spec, 4, "env", "prod");
                    });
                });
            });
        });
    });
    w.msg(1, |r| {
        r.msg(5, |desk| {
            desk.msg(1, |h| {
                h.str(1, "windows_desktop");
            });
        });
    });
    w.str(2, "next-key");
    let resp = proto::ListResourcesResponse::decode(&w.0[..]).unwrap();
    assert_eq!(resp.next_key, "next-key");
    let labels: Vec<Option<Vec<(String, String)>>> =
        resp.resources.iter().map(|r| labels_of(r).map(|l| l.into_iter().collect())).collect();
    let pairs = |p: &[(&str, &str)]| Some(p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>());
    assert_eq!(
        labels,
        vec![
            // The command label's result replaces the static value.
            pairs(&[("env", "prod"), ("team", "payments")]),
            // The app's labels, not its agent's.
            pairs(&[("team", "obs"), ("zone", "b")]),
            pairs(&[("engine", "pg"), ("env", "prod")]),
            None,
        ]
    );
}
