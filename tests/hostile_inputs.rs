//! The inputs users actually send: a 1 MB reason, unicode, right-to-left
//! text and emoji in every field, 500 roles, 200 suggested reviewers (half of
//! them not emails), empty fields. Every renderer keeps every message within
//! its chat's limits with no live mention, routing drops the reviewers that
//! are not emails, and such a request goes through the engine to Slack.

mod common;
#[path = "support/render_limits.rs"]
mod render_limits;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use common::{Env, eventually};
use render_limits::{check_discord, check_mattermost, check_slack};
use teleport_plugin::app::{Extras, launch};
use teleport_plugin::chat::text::{TRUNCATED, looks_like_email};
use teleport_plugin::chat::view::web_link;
use teleport_plugin::chat::{Content, RequestView, Status, console, discord, mattermost, slack};
use teleport_plugin::config::RoleRecipients;
use teleport_plugin::engine::route::{EvalContext, Router};
use teleport_plugin::model::{AccessRequest, MonitoringRule, RequestState, ResourceId, Review};
use teleport_plugin_sim::chat::{ChatSim, SimChannel, SimUser, SlackSim, SlackSimConfig};
use teleport_plugin_sim::access::{self, AccessRequestExt};

/// Unicode a user may type: combining marks, right-to-left scripts and
/// overrides, emoji sequences, zero-width characters.
const WILD: &str = "Zoë\u{301} שלום مرحبا \u{202e}txt.exe\u{202c} 🎉👩‍👩‍👧‍👦🏳️‍🌈 \u{200B}\u{FEFF}漢字";
/// Mention and markup syntax of all three chats.
const PINGS: &str = "<!channel> <!here> <!everyone> <@U0ALICE001> @everyone @here @channel @all <#C1|x> [x](https://evil.example) ```x``` & &amp; <";

/// About 1 MB of reason: several lines of wild text and pings.
fn megabyte_reason() -> String {
    let line = format!("{WILD} {PINGS}\n");
    line.repeat((1 << 20) / line.len())
}

/// 200 suggested reviewers: 100 emails (some in unicode), 100 that are not.
fn suggested_reviewers() -> (Vec<String>, Vec<String>) {
    let valid: Vec<String> = (0..100)
        .map(|i| {
            if i % 4 == 0 {
                format!("rëviewer{i}@exämple.com")
            } else {
                format!("reviewer{i}@example.com")
            }
        })
        .collect();
    let shapes = [
        "not an email",
        "@here",
        "<!channel>",
        "bob",
        "#access",
        "a@b",
        "trailing@dot.",
        "@example.com",
        "two@@example.com",
        "a@b@c.com",
        "spaced out@example.com",
        "<mallory@example.com>",
        "mallory@example.com/evil",
        "mallory@exa[mple].com",
        "mallory\u{0}@example.com",
        "mallory@example.com\n#general",
        "",
        " ",
        WILD,
        "team/channel",
    ];
    // Copies carry a space and a number: still not emails, all distinct.
    let invalid: Vec<String> = (0..100)
        .map(|i| {
            if i < shapes.len() {
                shapes[i].to_string()
            } else {
                format!("{} {i}", shapes[i % shapes.len()])
            }
        })
        .collect();
    (valid, invalid)
}

fn big_request() -> AccessRequest {
    let roles: Vec<String> = (0..500).map(|i| format!("role-{i}-{WILD}")).collect();
    let mut r = AccessRequest::new_pending(
        "0b5e8a2c-4f3d-4e7a-9c1b-2d6f8e0a1b3c",
        format!("{WILD}@example.com"),
        roles,
    );
    r.request_reason = megabyte_reason();
    r.resolve_reason = format!("{PINGS}{WILD}").repeat(2000);
    r.resources = (0..200)
        .map(|i| ResourceId {
            cluster: WILD.into(),
            kind: "node".into(),
            name: format!("{PINGS}{i}"),
            sub_resource: String::new(),
        })
        .collect();
    let review_reason: String = r.request_reason.chars().take(10_000).collect();
    r.reviews = (0..200)
        .map(|i| Review {
            author: format!("{WILD}{PINGS}{i}"),
            roles: vec!["reviewer".into()],
            proposed_state: if i % 2 == 0 {
                RequestState::Approved
            } else {
                RequestState::Denied
            },
            reason: review_reason.clone(),
            created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i)),
        })
        .collect();
    let (valid, invalid) = suggested_reviewers();
    r.suggested_reviewers = valid
        .into_iter()
        .zip(invalid)
        .flat_map(|(a, b)| [a, b])
        .collect();
    r.promoted_to = Some(format!("{WILD}{PINGS}"));
    r.system_annotations = BTreeMap::from([("team".to_string(), vec![WILD.to_string()])]);
    r
}

/// [`big_request`] as Auth would hold it when created (no id, no reviews yet).
fn big_request_on_the_wire() -> teleport_plugin_proto::types::AccessRequestV3 {
    let big = big_request();
    let roles: Vec<&str> = big.roles.iter().map(String::as_str).collect();
    let mut r = access::new_request(&big.user, &roles);
    let spec = r.spec_mut();
    spec.request_reason = big.request_reason.clone();
    spec.requested_resource_i_ds =
        big.resources.iter().map(|id| access::resource_id(&id.cluster, &id.kind, &id.name, &id.sub_resource)).collect();
    spec.suggested_reviewers = big.suggested_reviewers.clone();
    spec.system_annotations = Some(access::label_values(&[("team", &[WILD])]));
    r
}

/// Every field empty that a request can have empty.
fn empty_request() -> AccessRequest {
    let mut r = AccessRequest::new_pending("", "", Vec::new());
    r.promoted_to = Some(String::new());
    r.reviews = vec![Review {
        author: String::new(),
        roles: Vec::new(),
        proposed_state: RequestState::Unknown(0),
        reason: String::new(),
        created: None,
    }];
    r
}

/// Renders every kind of content in every chat and checks it.
fn assert_renders_within_limits(v: &RequestView) {
    let mut contents = vec![Content::Card(v), Content::RequesterNotice(v)];
    contents.extend(
        [
            0,
            v.reviews.len() / 2,
            v.reviews.len().saturating_sub(1),
            v.reviews.len(),
        ]
        .map(|i| Content::Review(v, i)),
    );
    for c in contents {
        let what = c.marker().kind_str();
        let s = slack::render::render(&c);
        check_slack(&s).unwrap_or_else(|e| panic!("slack {what}: {e}"));
        let d = discord::render::render(&c);
        check_discord(&d).unwrap_or_else(|e| panic!("discord {what}: {e}"));
        if !v.id.is_empty() {
            assert!(
                discord::render::has_marker(&d.content, &c.marker()),
                "discord {what}: the marker line was cut"
            );
        }
        check_mattermost(&mattermost::render::render(&c))
            .unwrap_or_else(|e| panic!("mattermost {what}: {e}"));
        assert!(!console::render(&c).is_empty());
    }
}

fn views(r: &AccessRequest) -> Vec<RequestView> {
    let logins: BTreeMap<String, Vec<String>> = r
        .roles
        .iter()
        .map(|role| {
            (
                role.clone(),
                vec![WILD.to_string(), PINGS.to_string(), "root".into()],
            )
        })
        .collect();
    let mut out = Vec::new();
    for status in [
        Status::Pending,
        Status::Approved,
        Status::Denied,
        Status::Expired,
        Status::Promoted,
    ] {
        for link in [None, web_link("teleport.example.com:443", true, &r.id)] {
            for logins in [BTreeMap::new(), logins.clone()] {
                out.push(RequestView::from_request(
                    r,
                    WILD,
                    link.clone(),
                    logins,
                    status,
                ));
            }
        }
    }
    out
}

#[test]
fn a_huge_unicode_request_renders_within_every_chats_limits() {
    let r = big_request();
    for v in views(&r) {
        assert_renders_within_limits(&v);
    }
    // The cuts are visible and what is shown starts with what was written.
    let v = RequestView::from_request(&r, "prod", None, BTreeMap::new(), Status::Pending);
    let card = slack::render::render(&Content::Card(&v));
    let all = serde_json::to_string(&card.blocks).unwrap();
    assert!(
        all.contains(TRUNCATED),
        "Slack card does not say it was cut"
    );
    assert!(
        all.contains("Zoë\u{301} שלום مرحبا \u{202e}txt.exe\u{202c} 🎉👩‍👩‍👧‍👦"),
        "reason start missing: {}",
        &all[..500]
    );
    assert!(mattermost::render::render(&Content::Card(&v)).contains(TRUNCATED));
}

#[test]
fn a_megabyte_of_characters_that_expand_when_escaped_stays_within_limits() {
    // `&` becomes `&amp;` in Slack, `@` gains a zero-width space, a backtick
    // a zero-width no-break space: the escaped text is longer than the cut.
    for unit in [
        "&", "<", "@", "`", "\n", "\\", "*", "🎉", "\u{202e}", "e\u{301}", " ",
    ] {
        let mut r =
            AccessRequest::new_pending("4b1d", unit.repeat(5000), vec![unit.repeat(5000); 3]);
        r.request_reason = unit.repeat((1 << 20) / unit.len());
        r.resolve_reason = unit.repeat(100_000);
        r.reviews = vec![Review {
            author: unit.repeat(5000),
            roles: Vec::new(),
            proposed_state: RequestState::Approved,
            reason: unit.repeat(100_000),
            created: None,
        }];
        // Two views cover both card layouts (with and without logins).
        for v in views(&r).into_iter().step_by(7).take(2) {
            assert_renders_within_limits(&v);
        }
    }
}

#[test]
fn empty_fields_render_with_placeholders_within_limits() {
    let r = empty_request();
    for v in views(&r) {
        assert_renders_within_limits(&v);
    }
    let v = RequestView::from_request(&r, "", None, BTreeMap::new(), Status::Pending);
    let card = slack::render::render(&Content::Card(&v));
    assert!(
        serde_json::to_string(&card.blocks)
            .unwrap()
            .contains("(empty)"),
        "empty roles are shown as such"
    );
    assert!(card.text.contains("someone requested"), "{}", card.text);
}

#[test]
fn routing_keeps_only_the_suggested_reviewers_that_are_emails() {
    let r = big_request();
    let (valid, invalid) = suggested_reviewers();
    let static_routes: RoleRecipients = BTreeMap::from([
        ("*".to_string(), vec!["#access".to_string()]),
        (
            r.roles[7].clone(),
            vec!["#role-7".to_string(), "#access".to_string()],
        ),
    ]);
    let router = Router::new("slack", static_routes);
    let got = router.route(&r, &EvalContext::with_traits(Default::default()));
    let mut want = vec!["#access".to_string(), "#role-7".to_string()];
    want.extend(valid.iter().cloned());
    assert_eq!(
        got.recipients, want,
        "static routes once each, then the valid reviewers in order"
    );
    for bad in &invalid {
        assert!(
            !got.recipients.contains(bad) || bad == "#access",
            "{bad:?} was routed"
        );
    }
    // What routing lets through, the chat clients treat as an email (and
    // look up as a user), never as a channel name.
    for rcpt in &got.recipients[2..] {
        assert!(
            looks_like_email(rcpt),
            "{rcpt:?} is routed as a reviewer but a chat would not read it as an email"
        );
    }

    // A rule over the 200 reviewers and 500 roles replaces static routing.
    router.set_rules(vec![MonitoringRule {
        name: "big".into(),
        subjects: vec!["access_request".into()],
        condition: format!(
            "access_request.spec.suggested_reviewers.contains(\"{}\") && access_request.spec.roles.contains(\"{}\")",
            valid[99], r.roles[499]
        ),
        notification_name: "slack".into(),
        recipients: vec!["#amr".into()],
        schedules: Default::default(),
    }]);
    assert_eq!(router.route(&r, &EvalContext::with_traits(Default::default())).recipients, vec!["#amr"]);

    // No roles and no reviewers: no recipient, as upstream (the default
    // recipient stands in for roles without an entry of their own).
    let none = Router::new(
        "slack",
        BTreeMap::from([("*".to_string(), vec!["#access".to_string()])]),
    )
    .route(&empty_request(), &EvalContext::with_traits(Default::default()));
    assert_eq!(none.recipients, Vec::<String>::new());
}

const CHANNEL: &str = "C0ACCESS01";

/// The huge request through the Teleport simulator, the engine and the real
/// Slack client to the Slack simulator (which enforces Block Kit limits):
/// posted to the channel, within limits, and to the one suggested reviewer
/// Slack knows; reviewers that are not emails are never addressed.
#[tokio::test]
async fn a_huge_request_is_posted_to_slack_within_limits() {
    let env = Env::new().await;
    let (valid, invalid) = suggested_reviewers();
    let reviewer = SimUser::new("U0REVIEW01", "reviewer1", valid[1].as_str());
    let sim = SlackSim::start(
        SlackSimConfig::default()
            .with_user(SimUser::new("U0ALICE001", "alice", "alice@example.com"))
            .with_user(reviewer)
            .with_channel(SimChannel::new(CHANNEL, "access")),
    )
    .await;
    let cfg = env.config(&format!(
        "[slack]\ntoken = \"xoxb-sim-token\"\napi_url = \"{}\"\n[role_to_recipients]\n\"*\" = \"{CHANNEL}\"\n",
        sim.base_url()
    ));
    let chats = teleport_plugin::cli::build_chats(&cfg).unwrap();
    let running = launch(&cfg, chats, Extras::default())
        .await
        .expect("launch");
    assert!(running.ready(Duration::from_secs(10)).await);

    let req = env.sim.create_request(big_request_on_the_wire());
    let card_in = |channel: &str| {
        sim.messages_in(channel).into_iter().find(|m| {
            m.metadata
                .as_ref()
                .is_some_and(|md| md["event_payload"]["request_id"] == req.id())
        })
    };
    assert!(
        eventually(Duration::from_secs(30), || card_in(CHANNEL).is_some()).await,
        "card posted to the channel"
    );
    let card = card_in(CHANNEL).unwrap();
    let rendered = slack::render::Message {
        text: card.text.clone().unwrap_or_default(),
        blocks: card
            .blocks
            .clone()
            .and_then(|b| b.as_array().cloned())
            .unwrap_or_default(),
    };
    check_slack(&rendered).unwrap();
    assert!(
        serde_json::to_string(&rendered.blocks)
            .unwrap()
            .contains(TRUNCATED)
    );

    // The reviewer Slack knows gets the card in a DM.
    assert!(
        eventually(Duration::from_secs(30), || sim
            .dm_channel_of("U0REVIEW01")
            .is_some_and(|dm| card_in(&dm).is_some()))
        .await,
        "the known suggested reviewer got the card"
    );
    // Reviewers that are not emails were never used as a channel or looked up.
    assert!(common::wait_idle(&[&running], Duration::from_secs(30)).await, "idle");
    for call in sim.core().calls() {
        let body = call.body.to_string();
        for bad in invalid
            .iter()
            .filter(|b| b.len() > 3 && !b.starts_with('#'))
        {
            assert!(
                !(call.endpoint == "chat.postMessage" && call.body["channel"] == bad.as_str()),
                "posted to {bad:?}: {body}"
            );
            assert!(
                !(call.endpoint == "users.lookupByEmail" && body.contains(bad.as_str())),
                "looked up {bad:?}"
            );
        }
    }
    running.stop(Duration::from_secs(5)).await;
}
