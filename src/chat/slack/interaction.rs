//! Reading a Slack `block_actions` interaction payload (the same JSON object
//! over Socket Mode and, form-encoded, over the HTTP Request URL) into a
//! [`Click`] plus what is needed to answer the clicker.
//!
//! Pure: the caller has already authenticated the payload (the Socket Mode
//! socket, or a verified signature). A payload is skipped, as the official
//! plugin skips it, unless it holds exactly one action from the
//! `review_block` with a known action ID, a non-empty value (the request ID)
//! and a clicker's user ID. Only `user.id` identifies the clicker; names are
//! for logs.

use std::fmt;

use serde_json::Value;

use super::render::{APPROVE_ACTION, DENY_ACTION, REVIEW_BLOCK_ID};
use crate::chat::MessageRef;
use crate::chat::click::{Click, Decision};
use crate::config::Secret;

/// A click and where its outcome goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub click: Click,
    /// Workspace of the clicker (`team.id`, else `user.team_id`).
    pub team_id: Option<String>,
    pub reply: ReplyTo,
}

/// Where the clicker is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The interaction's `response_url`: a capability URL, never logged
    /// (hence a [`Secret`], whose Debug is redacted).
    pub response_url: Option<Secret>,
    /// Channel of the card, for `chat.postEphemeral` without a response URL.
    pub channel_id: String,
    pub user_id: String,
    /// The thread the card sits in, if it is a reply itself.
    pub thread_ts: Option<String>,
}

/// Why a payload carries no click for us. Says nothing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not a `block_actions` payload (another interaction type).
    NotBlockActions(String),
    /// Not exactly one action.
    ActionCount(usize),
    /// The action is from another block than the review buttons.
    OtherBlock(String),
    /// The button has no value (request ID) or the payload no `user.id`.
    MissingData(&'static str),
    UnknownAction(String),
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBlockActions(t) => write!(f, "interaction type {t:?} is not block_actions"),
            Self::ActionCount(n) => write!(f, "{n} actions instead of one"),
            Self::OtherBlock(b) => write!(f, "action from block {b:?}, not {REVIEW_BLOCK_ID}"),
            Self::MissingData(what) => write!(f, "the payload has no {what}"),
            Self::UnknownAction(a) => write!(f, "unknown action_id {a:?}"),
        }
    }
}

/// Reads one interaction payload.
pub fn parse(payload: &Value) -> Result<Interaction, Skip> {
    let kind = text(&payload["type"]);
    if kind != "block_actions" {
        return Err(Skip::NotBlockActions(clip(kind)));
    }
    let actions = payload["actions"].as_array().map(Vec::as_slice).unwrap_or_default();
    let [action] = actions else {
        return Err(Skip::ActionCount(actions.len()));
    };
    let block = text(&action["block_id"]);
    if block != REVIEW_BLOCK_ID {
        return Err(Skip::OtherBlock(clip(block)));
    }
    let request_id = text(&action["value"]);
    if request_id.is_empty() {
        return Err(Skip::MissingData("button value (request ID)"));
    }
    let user = &payload["user"];
    let user_id = text(&user["id"]);
    if user_id.is_empty() {
        return Err(Skip::MissingData("user.id"));
    }
    let action_id = text(&action["action_id"]);
    let decision = match action_id {
        APPROVE_ACTION => Decision::Approve,
        DENY_ACTION => Decision::Deny,
        other => return Err(Skip::UnknownAction(clip(other))),
    };

    let container = &payload["container"];
    let channel_id = non_empty(&container["channel_id"]).or_else(|| non_empty(&payload["channel"]["id"]));
    let message_ts = non_empty(&container["message_ts"]).or_else(|| non_empty(&payload["message"]["ts"]));
    let message = match (&channel_id, &message_ts) {
        (Some(c), Some(ts)) => Some(MessageRef { channel_id: c.clone(), message_id: ts.clone() }),
        _ => None,
    };
    let user_name = non_empty(&user["username"]).or_else(|| non_empty(&user["name"])).unwrap_or_default();
    // A redelivery and a second click on the same button by the same user
    // carry the same user, card and button; `action_ts` differs, so it is
    // left out.
    let dedupe_key = format!(
        "slack:{user_id}:{}:{}:{action_id}:{request_id}",
        channel_id.as_deref().unwrap_or("-"),
        message_ts.as_deref().unwrap_or("-"),
    );
    let team_id = non_empty(&payload["team"]["id"]).or_else(|| non_empty(&user["team_id"]));
    let thread_ts = non_empty(&payload["message"]["thread_ts"]).filter(|t| Some(t) != message_ts.as_ref());
    let response_url = non_empty(&payload["response_url"]).map(Secret::new);

    Ok(Interaction {
        click: Click {
            chat: "slack",
            user_id: user_id.to_string(),
            user_name,
            request_id: request_id.to_string(),
            decision,
            message,
            dedupe_key,
        },
        team_id,
        reply: ReplyTo {
            response_url,
            channel_id: channel_id.unwrap_or_default(),
            user_id: user_id.to_string(),
            thread_ts,
        },
    })
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn non_empty(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// Foreign values in skip reasons are cut short: they end up in logs.
fn clip(s: &str) -> String {
    crate::chat::text::truncate(s, 64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A button click as Slack sends it (fields as documented for block_actions).
    fn payload(action_id: &str) -> Value {
        json!({
            "type": "block_actions",
            "user": {"id": "U0ALICE01", "username": "alice", "name": "alice.n", "team_id": "T0TEAM001"},
            "api_app_id": "A0APP0001",
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": "1712345678.000100", "channel_id": "C0OPS0001", "is_ephemeral": false},
            "trigger_id": "123.456.abc",
            "team": {"id": "T0TEAM001", "domain": "acme"},
            "channel": {"id": "C0OPS0001", "name": "ops"},
            "message": {"type": "message", "ts": "1712345678.000100", "user": "U0BOT0001", "text": "card"},
            "response_url": "https://hooks.slack.com/actions/T0TEAM001/1/secret",
            "actions": [{
                "type": "button", "action_id": action_id, "block_id": "review_block",
                "text": {"type": "plain_text", "text": "Approve"}, "value": "req-1",
                "style": "primary", "action_ts": "1712345680.123456",
            }],
        })
    }

    #[test]
    fn a_review_button_click_becomes_a_click() {
        let i = parse(&payload("approve_button")).unwrap();
        assert_eq!(i.click.chat, "slack");
        assert_eq!(i.click.user_id, "U0ALICE01");
        assert_eq!(i.click.user_name, "alice");
        assert_eq!(i.click.request_id, "req-1");
        assert_eq!(i.click.decision, Decision::Approve);
        assert_eq!(
            i.click.message,
            Some(MessageRef { channel_id: "C0OPS0001".into(), message_id: "1712345678.000100".into() })
        );
        assert_eq!(i.team_id.as_deref(), Some("T0TEAM001"));
        assert_eq!(i.reply.channel_id, "C0OPS0001");
        assert_eq!(i.reply.user_id, "U0ALICE01");
        assert_eq!(i.reply.thread_ts, None);
        assert_eq!(i.reply.response_url.as_ref().map(Secret::expose), Some("https://hooks.slack.com/actions/T0TEAM001/1/secret"));
        assert!(!format!("{i:?}").contains("hooks.slack.com"), "the response URL stays out of Debug");
        assert_eq!(parse(&payload("deny_button")).unwrap().click.decision, Decision::Deny);
    }

    #[test]
    fn dedupe_keys_ignore_the_action_time_but_not_the_button_or_user() {
        let first = parse(&payload("approve_button")).unwrap().click.dedupe_key;
        let mut again = payload("approve_button");
        again["actions"][0]["action_ts"] = json!("1712345699.000001");
        again["trigger_id"] = json!("999.999.def");
        assert_eq!(parse(&again).unwrap().click.dedupe_key, first);
        let deny = parse(&payload("deny_button")).unwrap().click.dedupe_key;
        assert_ne!(deny, first);
        let mut bob = payload("approve_button");
        bob["user"]["id"] = json!("U0BOB0001");
        assert_ne!(parse(&bob).unwrap().click.dedupe_key, first);
        let mut other_card = payload("approve_button");
        other_card["container"]["message_ts"] = json!("1712345678.000200");
        assert_ne!(parse(&other_card).unwrap().click.dedupe_key, first);
    }

    #[test]
    fn fallbacks_for_channel_message_name_and_team() {
        let mut p = payload("approve_button");
        p["container"] = json!({"type": "message"});
        p["user"] = json!({"id": "W0GRID001", "name": "grid.user", "team_id": "T0OTHER01"});
        p["team"] = Value::Null;
        p["message"]["thread_ts"] = json!("1712345600.000001");
        p.as_object_mut().unwrap().remove("response_url");
        let i = parse(&p).unwrap();
        assert_eq!(i.click.message, Some(MessageRef { channel_id: "C0OPS0001".into(), message_id: "1712345678.000100".into() }));
        assert_eq!(i.click.user_name, "grid.user");
        assert_eq!(i.team_id.as_deref(), Some("T0OTHER01"));
        assert_eq!(i.reply.thread_ts.as_deref(), Some("1712345600.000001"));
        assert_eq!(i.reply.response_url, None);

        p["channel"] = Value::Null;
        let i = parse(&p).unwrap();
        assert_eq!(i.click.message, None, "no channel: no card to check against");
    }

    #[test]
    fn payloads_the_official_plugin_skips_are_skipped() {
        let mut p = payload("approve_button");
        p["type"] = json!("view_submission");
        assert_eq!(parse(&p), Err(Skip::NotBlockActions("view_submission".into())));

        let mut p = payload("approve_button");
        let a = p["actions"][0].clone();
        p["actions"] = json!([a.clone(), a]);
        assert_eq!(parse(&p), Err(Skip::ActionCount(2)));
        p["actions"] = json!([]);
        assert_eq!(parse(&p), Err(Skip::ActionCount(0)));

        let mut p = payload("approve_button");
        p["actions"][0]["block_id"] = json!("other_block");
        assert_eq!(parse(&p), Err(Skip::OtherBlock("other_block".into())));

        let mut p = payload("approve_button");
        p["actions"][0]["value"] = json!("");
        assert!(matches!(parse(&p), Err(Skip::MissingData(_))));

        let mut p = payload("approve_button");
        p["user"]["id"] = json!("");
        assert_eq!(parse(&p), Err(Skip::MissingData("user.id")));

        assert_eq!(parse(&payload("escalate_button")), Err(Skip::UnknownAction("escalate_button".into())));
        assert!(parse(&json!("not an object")).is_err());
        let mut p = payload("approve_button");
        p["actions"][0]["block_id"] = json!("x".repeat(10_000));
        assert!(parse(&p).unwrap_err().to_string().len() < 200, "foreign text is clipped");
    }
}
