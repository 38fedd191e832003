//! Slack rendering: Block Kit sections in the official layout (title, field
//! block, status context) plus a short top-level `text` for notifications
//! and screen readers.
//!
//! Safety: `&`, `<` and `>` are escaped in every piece of text, which turns
//! `<!channel>`, `<!here>`, `<@U…>` and `<url|label>` into plain characters;
//! user text also sits in code spans/blocks whose backticks are neutralised.
//! Limits: each text object stays within 3000 characters and a message within
//! 50 blocks; anything cut says so.
//!
//! Review from chat: a pending card with `view.buttons` ends in an actions
//! block [`REVIEW_BLOCK_ID`] holding Approve ([`APPROVE_ACTION`]) and Deny
//! ([`DENY_ACTION`], behind a confirmation dialog), each carrying the request
//! ID as its value, as the official plugin lays them out. An update rendered
//! without `buttons` (resolved, long-term) has no actions block, so it removes
//! them.

use serde_json::{Value, json};

use crate::chat::fields::{self, Limits, Line, Part};
use crate::chat::text::{TRUNCATED, code_safe, len};
use crate::chat::{Content, Marker, RequestView, Status};

/// Characters per text object (section text, context element).
pub const MAX_TEXT_OBJECT: usize = 3000;
/// Blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// `metadata.event_type` of every message we post.
pub const EVENT_TYPE: &str = "teleport_access_request";
/// `block_id` of the actions block with the review buttons.
pub const REVIEW_BLOCK_ID: &str = "review_block";
/// `action_id` of the Approve button.
pub const APPROVE_ACTION: &str = "approve_button";
/// `action_id` of the Deny button.
pub const DENY_ACTION: &str = "deny_button";
/// Longest button `value` Slack accepts; a longer request ID gets no buttons
/// (Teleport's IDs are UUIDs, far shorter).
pub const MAX_BUTTON_VALUE: usize = 2000;

/// A rendered message: `text` fallback and blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub blocks: Vec<Value>,
}

/// Message metadata that lets us find a message again.
pub fn metadata(marker: &Marker) -> Value {
    json!({
        "event_type": EVENT_TYPE,
        "event_payload": {"request_id": marker.request_id, "kind": marker.kind_str()},
    })
}

/// Whether a message's metadata (as conversations.history returns it) is `marker`'s.
pub fn has_marker(message: &Value, marker: &Marker) -> bool {
    let md = &message["metadata"];
    md["event_type"] == EVENT_TYPE
        && md["event_payload"]["request_id"] == marker.request_id.as_str()
        && md["event_payload"]["kind"] == marker.kind_str().as_str()
}

pub fn render(content: &Content<'_>) -> Message {
    let lim = Limits::default();
    match content {
        Content::Card(v) => {
            let card = fields::card(v, &lim);
            let title = section(&escape(card.title));
            let lines: Vec<String> = card.fields.iter().map(line).collect();
            let mut status: Vec<String> = card.status.iter().map(line).collect();
            if let Some(n) = approvals_needed(v) {
                status.push(format!("{n} more approval{} needed", if n == 1 { " is" } else { "s are" }));
            }
            let actions = review_actions(v);
            let mut blocks = vec![title];
            // Title, status context and the buttons take their blocks of the 50.
            let reserved = 2 + usize::from(actions.is_some());
            blocks.extend(sections(&lines, MAX_BLOCKS - reserved));
            blocks.push(json!({
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": fit(&status.join("\n"), MAX_TEXT_OBJECT)}],
            }));
            blocks.extend(actions);
            Message {
                text: escape_within(&fields::summary(v, &lim), MAX_TEXT_OBJECT),
                blocks,
            }
        }
        Content::Review(v, i) => {
            let lines: Vec<String> = fields::review(v, *i, &lim).iter().map(line).collect();
            let text = match v.reviews.get(*i) {
                Some(r) => format!(
                    "{} reviewed request {}: {}",
                    r.author.trim(),
                    v.id,
                    fields::status_text(crate::chat::view::review_status(r))
                ),
                None => format!("A review of request {} was recorded", v.id),
            };
            Message {
                text: escape_within(&text, MAX_TEXT_OBJECT),
                blocks: sections(&lines, MAX_BLOCKS),
            }
        }
        Content::RequesterNotice(v) => {
            let lines: Vec<String> = fields::notice(v, &lim).iter().map(line).collect();
            let text = format!(
                "Your access request {} is now {}",
                v.id,
                fields::status_text(v.status)
            );
            Message {
                text: escape_within(&text, MAX_TEXT_OBJECT),
                blocks: sections(&lines, MAX_BLOCKS),
            }
        }
    }
}

/// Approvals still needed, shown on a pending card only.
fn approvals_needed(v: &RequestView) -> Option<u32> {
    v.approvals_needed.filter(|n| *n > 0 && v.status == Status::Pending)
}

/// The Approve/Deny actions block, when the card is to carry buttons.
fn review_actions(v: &RequestView) -> Option<Value> {
    let id = v.id.as_str();
    if !v.buttons || v.status != Status::Pending || id.is_empty() || len(id) > MAX_BUTTON_VALUE {
        return None;
    }
    // Dialog texts are plain text of at most 300 characters: the ID is named
    // only when it fits comfortably.
    let which = if len(id) <= 100 { format!("request {id}") } else { "this access request".to_string() };
    Some(json!({
        "type": "actions",
        "block_id": REVIEW_BLOCK_ID,
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": id,
                "accessibility_label": "Approve this access request",
            },
            {
                "type": "button",
                "action_id": DENY_ACTION,
                "text": {"type": "plain_text", "text": "Deny"},
                "style": "danger",
                "value": id,
                "accessibility_label": "Deny this access request",
                "confirm": {
                    "title": {"type": "plain_text", "text": "Deny the request?"},
                    "text": {"type": "plain_text", "text": format!("Deny {which}? Your review is recorded in Teleport and cannot be withdrawn.")},
                    "confirm": {"type": "plain_text", "text": "Deny"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                    "style": "danger",
                },
            },
        ],
    }))
}

/// Escapes the three characters Slack treats as control sequences.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `raw` (backticks neutralised too) and cuts the result to `max`
/// characters, never inside an entity.
fn escape_within(raw: &str, max: usize) -> String {
    let raw = raw.replace('`', "`\u{FEFF}");
    let full = escape(&raw);
    if len(&full) <= max {
        return full;
    }
    let budget = max.saturating_sub(len(TRUNCATED));
    let mut out = String::new();
    let mut n = 0;
    for c in raw.chars() {
        let piece = escape(c.encode_utf8(&mut [0; 4]));
        n += len(&piece);
        if n > budget {
            break;
        }
        out.push_str(&piece);
    }
    out.push_str(TRUNCATED);
    out
}

/// Cuts already-escaped text to `max` characters without splitting an entity.
fn fit(s: &str, max: usize) -> String {
    if len(s) <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(len(TRUNCATED))).collect();
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        cut.truncate(amp);
    }
    cut.push_str(TRUNCATED);
    cut
}

fn part(p: &Part) -> String {
    match p {
        Part::Label(name) => format!("*{name}*: "),
        Part::Text(t) => escape(t),
        Part::Code(t) => format!("`{}`", escape(&code_safe(&t.replace(['\n', '\r'], " ")))),
        Part::Block(t) => format!("```{}```", escape(&code_safe(t))),
        Part::Link(url) => escape(url),
    }
}

fn line(l: &Line) -> String {
    l.iter().map(part).collect()
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// Packs lines into as few sections as fit 3000 characters each, at most
/// `max_blocks` of them; lines beyond are counted in a final note.
fn sections(lines: &[String], max_blocks: usize) -> Vec<Value> {
    // Room kept in the last allowed section for the "not shown" note.
    const NOTE_ROOM: usize = 100;
    let mut texts: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut dropped = 0;
    for l in lines {
        if dropped > 0 {
            dropped += 1;
            continue;
        }
        let l = fit(l, MAX_TEXT_OBJECT - NOTE_ROOM);
        let last = texts.len() + 1 >= max_blocks;
        let room = if last {
            MAX_TEXT_OBJECT - NOTE_ROOM
        } else {
            MAX_TEXT_OBJECT
        };
        if current.is_empty() {
            current = l;
        } else if len(&current) + 1 + len(&l) <= room {
            current.push('\n');
            current.push_str(&l);
        } else if last {
            dropped = 1;
        } else {
            texts.push(std::mem::replace(&mut current, l));
        }
    }
    if dropped > 0 {
        current.push_str(&format!(
            "\n… ({dropped} more line{} not shown; see the request in Teleport)",
            if dropped == 1 { "" } else { "s" }
        ));
    }
    if !current.is_empty() {
        texts.push(current);
    }
    texts.iter().map(|t| section(t)).collect()
}

#[cfg(test)]
mod tests {
    
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::chat::fixtures::view;
    use crate::chat::{RequestView, Status};
    use crate::model::{RequestState, Review};

    const HOSTILE: &str = "<!channel> <!here> @everyone @here <@U123> [x](http://evil) <http://evil|click> ```code``` & \u{202e}RTL\u{202e} 🎉";

    fn hostile_view() -> RequestView {
        let mut v = view();
        v.user = HOSTILE.into();
        v.roles = (0..500).map(|i| format!("{HOSTILE}{i}")).collect();
        v.logins_by_role = v
            .roles
            .iter()
            .map(|r| (r.clone(), vec![HOSTILE.to_string(); 3]))
            .collect();
        v.resources = vec![HOSTILE.into(); 50];
        v.request_reason = format!("{HOSTILE}\n").repeat(1_000_000 / HOSTILE.len());
        v.resolve_reason = "&".repeat(10_000);
        v.promoted_to = Some(HOSTILE.into());
        v.reviews = (0..200)
            .map(|i| Review {
                author: format!("{HOSTILE}{i}"),
                roles: vec![],
                proposed_state: if i % 2 == 0 {
                    RequestState::Approved
                } else {
                    RequestState::Denied
                },
                reason: "<".repeat(5000),
                created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            })
            .collect();
        v
    }

    /// Every text object of a message.
    fn texts(m: &Message) -> Vec<String> {
        let mut out = vec![m.text.clone()];
        for b in &m.blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                out.push(t.to_string());
            }
            for e in b["elements"].as_array().into_iter().flatten() {
                out.push(e["text"].as_str().unwrap_or_default().to_string());
            }
        }
        out
    }

    fn assert_safe(m: &Message) {
        assert!(m.blocks.len() <= MAX_BLOCKS, "{} blocks", m.blocks.len());
        for t in texts(m) {
            assert!(
                len(&t) <= MAX_TEXT_OBJECT,
                "text object of {} chars",
                len(&t)
            );
            assert!(
                !t.contains('<') && !t.contains('>'),
                "control sequence survived: {}",
                &t[..t.len().min(200)]
            );
            assert!(!t.contains("```code```"), "user backticks close code spans");
        }
        assert!(!m.text.is_empty(), "a text fallback is required");
    }

    #[test]
    fn card_matches_the_official_layout() {
        let mut v = view();
        v.request_reason = "please".into();
        let m = render(&Content::Card(&v));
        assert_eq!(m.blocks.len(), 3);
        assert_eq!(m.blocks[0]["text"]["text"], "You have a new Role Request:");
        assert_eq!(
            m.blocks[1]["text"]["text"],
            "*ID*: 4b1d-id\n*Cluster*: prod\n*User*: `alice`\n*Role(s)*: `editor`\n*Reason*: ```please```\n\
             *Approve*: `tsh request review --approve 4b1d-id`\n*Deny*: `tsh request review --deny 4b1d-id`"
        );
        assert_eq!(m.blocks[2]["type"], "context");
        assert_eq!(m.blocks[2]["elements"][0]["text"], "*Status*: ⏳ PENDING");
        assert_eq!(
            m.text,
            "You have a new Role Request: alice requested editor (request 4b1d-id). Status: ⏳ PENDING"
        );
    }

    #[test]
    fn resolved_card_shows_link_status_and_reason() {
        let mut v = view();
        v.link = Some("https://t.example.com/web/requests/4b1d-id?a=1&b=2".into());
        v.status = Status::Approved;
        v.resolve_reason = "ok <!here>".into();
        let m = render(&Content::Card(&v));
        let fields = m.blocks[1]["text"]["text"].as_str().unwrap();
        assert!(
            fields.ends_with("*Link*: https://t.example.com/web/requests/4b1d-id?a=1&amp;b=2"),
            "{fields}"
        );
        assert!(!fields.contains("tsh request review"));
        assert_eq!(
            m.blocks[2]["elements"][0]["text"],
            "*Status*: ✅ APPROVED\n*Resolution reason*: ```ok &lt;!here&gt;```"
        );
    }

    #[test]
    fn replies_and_notices_use_the_official_wording() {
        let mut v = view();
        v.reviews.push(Review {
            author: "bob".into(),
            roles: vec![],
            proposed_state: RequestState::Denied,
            reason: "not now".into(),
            created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        });
        let m = render(&Content::Review(&v, 0));
        assert_eq!(
            m.blocks[0]["text"]["text"],
            "`bob` reviewed the request at 14 Nov 23 22:13 UTC.\nResolution: ❌ DENIED.\nReason: ```not now```"
        );
        assert_eq!(m.text, "bob reviewed request 4b1d-id: ❌ DENIED");
        v.status = Status::Approved;
        let m = render(&Content::RequesterNotice(&v));
        assert_eq!(
            m.blocks[0]["text"]["text"],
            "Your access request 4b1d-id for roles `editor` is now ✅ APPROVED."
        );
    }

    #[test]
    fn hostile_input_stays_inert_and_within_limits() {
        let v = hostile_view();
        let mut contents = vec![Content::Card(&v), Content::RequesterNotice(&v)];
        contents.extend((0..200).step_by(37).map(|i| Content::Review(&v, i)));
        contents.push(Content::Review(&v, 999));
        for c in contents {
            let m = render(&c);
            assert_safe(&m);
        }
        let m = render(&Content::Card(&v));
        let all = texts(&m).join("\n");
        assert!(
            all.contains("more roles") || all.contains("more lines not shown"),
            "cuts are visible"
        );
        assert!(all.contains("&lt;!channel&gt;"));
        assert!(all.contains(TRUNCATED));
    }

    #[test]
    fn ampersands_never_push_a_section_over_the_limit() {
        let mut v = view();
        v.request_reason = "&".repeat(600);
        v.roles = vec!["&".repeat(600)];
        v.user = ">".repeat(600);
        let m = render(&Content::Card(&v));
        assert_safe(&m);
        assert!(m.blocks.len() >= 4, "fields were split across sections");
    }

    #[test]
    fn escaping_and_cutting_never_split_entities() {
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
        let e = escape_within(&"<".repeat(100), 50);
        assert!(len(&e) <= 50);
        assert!(e.ends_with(TRUNCATED));
        assert!(!e.trim_end_matches(TRUNCATED).ends_with('&'));
        assert_eq!(escape_within("ab", 2), "ab");
        let f = fit(&"&amp;".repeat(10), 20);
        assert!(
            f.starts_with("&amp;") && f.ends_with(TRUNCATED) && len(&f) <= 20,
            "{f}"
        );
    }

    #[test]
    fn pending_card_with_buttons_ends_in_the_review_block() {
        let mut v = view();
        v.buttons = true;
        v.approvals_needed = Some(2);
        let m = render(&Content::Card(&v));
        assert_eq!(m.blocks.len(), 4);
        assert_eq!(m.blocks[2]["elements"][0]["text"], "*Status*: ⏳ PENDING\n2 more approvals are needed");
        let actions = &m.blocks[3];
        assert_eq!(actions["type"], "actions");
        assert_eq!(actions["block_id"], REVIEW_BLOCK_ID);
        let approve = &actions["elements"][0];
        let deny = &actions["elements"][1];
        assert_eq!((approve["action_id"].as_str(), approve["style"].as_str(), approve["value"].as_str()), (Some("approve_button"), Some("primary"), Some("4b1d-id")));
        assert_eq!((deny["action_id"].as_str(), deny["style"].as_str(), deny["value"].as_str()), (Some("deny_button"), Some("danger"), Some("4b1d-id")));
        assert!(approve.get("confirm").is_none(), "approving needs no dialog");
        assert_eq!(deny["confirm"]["confirm"]["text"], "Deny");
        assert_eq!(deny["confirm"]["deny"]["text"], "Cancel");
        assert!(deny["confirm"]["text"]["text"].as_str().unwrap().contains("request 4b1d-id"));

        v.approvals_needed = Some(1);
        let m = render(&Content::Card(&v));
        assert!(m.blocks[2]["elements"][0]["text"].as_str().unwrap().ends_with("1 more approval is needed"));
    }

    #[test]
    fn no_buttons_unless_asked_for_and_pending() {
        let mut v = view();
        v.approvals_needed = Some(2);
        let m = render(&Content::Card(&v));
        assert!(m.blocks.iter().all(|b| b["type"] != "actions"), "buttons is false");
        v.buttons = true;
        v.status = Status::Approved;
        let m = render(&Content::Card(&v));
        assert!(m.blocks.iter().all(|b| b["type"] != "actions"), "resolved");
        assert!(!m.blocks[2]["elements"][0]["text"].as_str().unwrap().contains("more approval"));
        v.status = Status::Pending;
        v.id = "x".repeat(MAX_BUTTON_VALUE + 1);
        let m = render(&Content::Card(&v));
        assert!(m.blocks.iter().all(|b| b["type"] != "actions"), "an ID Slack would refuse as a value");
        // Replies and notices never carry buttons.
        v.id = "4b1d-id".into();
        assert!(render(&Content::RequesterNotice(&v)).blocks.iter().all(|b| b["type"] != "actions"));
    }

    #[test]
    fn hostile_card_with_buttons_stays_within_50_blocks() {
        let mut v = hostile_view();
        v.buttons = true;
        v.approvals_needed = Some(3);
        let m = render(&Content::Card(&v));
        assert_safe(&m);
        assert_eq!(m.blocks.last().unwrap()["block_id"], REVIEW_BLOCK_ID);
    }

    #[test]
    fn metadata_round_trips() {
        let v = view();
        let marker = Content::Review(&v, 3).marker();
        let msg = json!({"metadata": metadata(&marker)});
        assert!(has_marker(&msg, &marker));
        assert!(!has_marker(&msg, &Content::Card(&v).marker()));
        assert!(!has_marker(&json!({}), &marker));
    }
}
