//! Discord rendering: the official plain-markdown card in `content`, with one
//! embed per review on the card (Discord has no threads here), and a last
//! line that marks what the message is about so it can be found again.
//!
//! Safety: every message is sent with `allowed_mentions: {parse: []}`, so
//! nothing pings; on top of that `@` is defused, user text sits in code
//! spans/blocks with backticks neutralised, and our own text has markdown
//! escaped, so masked links `[x](y)` and `<@id>` render inert.
//! Limits: content ≤ 2000 characters; ≤ 10 embeds with title ≤ 256,
//! description ≤ 4096, author ≤ 256 and ≤ 6000 characters in total.
//!
//! Buttons: with review on, a pending card carries one action row with
//! Approve (success, green) and Deny (danger, red); their `custom_id` is
//! `tp:<action>:<request id>` (≤ 100 characters). Every body names its
//! `components`, so an edit without buttons removes them.

use serde_json::{Value, json};

use crate::chat::fields::{self, Limits, Line, Part, fit_lines};
use crate::chat::text::{code_safe, defuse_mentions, escape_markdown, len, truncate};
use crate::chat::click::Decision;
use crate::chat::view::review_status;
use crate::chat::{Content, Marker, RequestView, Status};
use crate::model::Review;

pub const MAX_CONTENT: usize = 2000;
pub const MAX_EMBEDS: usize = 10;
pub const MAX_EMBED_TITLE: usize = 256;
pub const MAX_EMBED_DESCRIPTION: usize = 4096;
pub const MAX_EMBED_AUTHOR: usize = 256;
pub const MAX_EMBEDS_TOTAL: usize = 6000;
/// Longest nonce Discord accepts.
pub const MAX_NONCE: usize = 25;
/// Longest `custom_id` of a component.
pub const MAX_CUSTOM_ID: usize = 100;
/// Prefix of our buttons' `custom_id`.
pub const CUSTOM_ID_PREFIX: &str = "tp:";
const STYLE_SUCCESS: u8 = 3;
const STYLE_DANGER: u8 = 4;

const GREEN: u32 = 2_328_611;
const RED: u32 = 13_771_309;
const GREY: u32 = 9_807_270;

/// Tighter than the default cuts: the whole card must fit 2000 characters.
const LIMITS: Limits = Limits {
    reason: 400,
    list: 300,
    name: 100,
    role_lines: 10,
};

/// A rendered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub content: String,
    pub embeds: Vec<Value>,
    /// Action rows; empty removes any buttons on an edit.
    pub components: Vec<Value>,
}

impl Message {
    /// The JSON body for creating or editing the message (never pings).
    pub fn body(&self) -> Value {
        json!({"content": self.content, "embeds": self.embeds, "components": self.components, "allowed_mentions": {"parse": []}})
    }
}

/// The `custom_id` of a button: `tp:approve:<id>` or `tp:deny:<id>`, `None`
/// when it would exceed Discord's 100 characters (no button then).
pub fn custom_id(decision: Decision, request_id: &str) -> Option<String> {
    let id = format!("{CUSTOM_ID_PREFIX}{}:{request_id}", decision.as_str());
    (len(&id) <= MAX_CUSTOM_ID).then_some(id)
}

/// What one of our buttons asks for; `None` for anything else.
pub fn parse_custom_id(custom_id: &str) -> Option<(Decision, &str)> {
    let rest = custom_id.strip_prefix(CUSTOM_ID_PREFIX)?;
    let (action, id) = rest.split_once(':')?;
    let decision = match action {
        "approve" => Decision::Approve,
        "deny" => Decision::Deny,
        _ => return None,
    };
    (!id.is_empty()).then_some((decision, id))
}

/// The Approve/Deny action row, when the view shows buttons.
fn buttons(v: &RequestView) -> Vec<Value> {
    if !v.buttons || v.status != Status::Pending {
        return Vec::new();
    }
    let (Some(approve), Some(deny)) = (custom_id(Decision::Approve, &v.id), custom_id(Decision::Deny, &v.id)) else {
        return Vec::new();
    };
    vec![json!({"type": 1, "components": [
        {"type": 2, "style": STYLE_SUCCESS, "label": "Approve", "custom_id": approve},
        {"type": 2, "style": STYLE_DANGER, "label": "Deny", "custom_id": deny},
    ]})]
}

pub fn render(content: &Content<'_>) -> Message {
    let marker = marker_line(&content.marker());
    match content {
        Content::Card(v) => {
            let card = fields::card(v, &LIMITS);
            let mut head = vec![format!("**{}**", escape_markdown(card.title))];
            head.extend(card.fields.iter().map(line));
            let mut tail: Vec<String> = card.status.iter().map(line).collect();
            if v.status == Status::Pending
                && let Some(n) = v.approvals_needed
            {
                tail.push(format!("**Approvals needed**: {n}"));
            }
            tail.push(marker);
            Message {
                content: fit_lines(&head, &tail, "\n", MAX_CONTENT),
                embeds: review_embeds(v),
                components: buttons(v),
            }
        }
        Content::Review(v, i) => {
            let head: Vec<String> = fields::review(v, *i, &LIMITS).iter().map(line).collect();
            Message {
                content: fit_lines(&head, &[marker], "\n", MAX_CONTENT),
                embeds: Vec::new(),
                components: Vec::new(),
            }
        }
        Content::RequesterNotice(v) => {
            let head: Vec<String> = fields::notice(v, &LIMITS).iter().map(line).collect();
            Message {
                content: fit_lines(&head, &[marker], "\n", MAX_CONTENT),
                embeds: Vec::new(),
                components: Vec::new(),
            }
        }
    }
}

/// The last line of every message: small print naming request and kind.
pub fn marker_line(marker: &Marker) -> String {
    format!(
        "-# Teleport access request {} · {}",
        escape_markdown(&marker.request_id),
        marker.kind_str()
    )
}

/// Whether a message's content ends with `marker`'s line.
pub fn has_marker(content: &str, marker: &Marker) -> bool {
    content
        .lines()
        .last()
        .is_some_and(|l| l == marker_line(marker))
}

/// A nonce derived from where and what we post: a repeat of the same post
/// (a retry) carries the same nonce, so Discord creates the message once.
pub fn nonce(channel_id: &str, marker: &Marker) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [channel_id, &marker.request_id, &marker.kind_str()] {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    let hex = hex::encode(ctx.finish().as_ref());
    format!("tp{}", &hex[..MAX_NONCE - 2])
}

/// One embed per review, at most 10: with more, a note about the earlier
/// ones and the last nine.
fn review_embeds(v: &RequestView) -> Vec<Value> {
    let reviews = &v.reviews;
    if reviews.is_empty() {
        return Vec::new();
    }
    let mut embeds = Vec::new();
    let shown: &[Review] = if reviews.len() > MAX_EMBEDS {
        let hidden = reviews.len() - (MAX_EMBEDS - 1);
        embeds.push(json!({
            "title": format!("{hidden} earlier reviews are not shown"),
            "color": GREY,
        }));
        &reviews[hidden..]
    } else {
        reviews
    };
    // Share the total budget evenly (with some room for the note embed).
    let per_embed = (MAX_EMBEDS_TOTAL - 100) / shown.len();
    for r in shown {
        let status = review_status(r);
        let verb = match status {
            Status::Approved => "Approved",
            Status::Denied => "Denied",
            Status::Promoted => "Promoted",
            _ => "Reviewed",
        };
        let title = match r.created {
            Some(t) => format!(
                "{} {verb} request at {}",
                status.emoji(),
                fields::format_time(t)
            ),
            None => format!("{} {verb} request", status.emoji()),
        };
        // Plain text in Discord, but kept as inert as everywhere else.
        let author = defuse_mentions(&code_safe(&truncate(r.author.trim(), LIMITS.name)));
        let budget = per_embed
            .saturating_sub(len(&title) + len(&author))
            .min(MAX_EMBED_DESCRIPTION);
        let color = match status {
            Status::Approved => GREEN,
            Status::Denied => RED,
            _ => GREY,
        };
        let mut embed = json!({
            "title": truncate(&title, MAX_EMBED_TITLE),
            "color": color,
            "author": {"name": truncate(&author, MAX_EMBED_AUTHOR)},
        });
        if !r.reason.trim().is_empty() {
            embed["description"] = json!(reason_block(&truncate(&r.reason, LIMITS.reason), budget));
        }
        embeds.push(embed);
    }
    embeds
}

/// "Reason:" and a code block within `max` characters, the block closed.
fn reason_block(reason: &str, max: usize) -> String {
    const OPEN: &str = "Reason:\n```\n";
    const CLOSE: &str = "\n```";
    let room = max.saturating_sub(len(OPEN) + len(CLOSE));
    let inner = fields::fit_rendered(reason, room, |r| defuse_mentions(&code_safe(r)));
    format!("{OPEN}{inner}{CLOSE}")
}

fn part(p: &Part) -> String {
    match p {
        Part::Label(name) => format!("**{name}**: "),
        Part::Text(t) => escape_markdown(t),
        Part::Code(t) => format!(
            "`{}`",
            defuse_mentions(&code_safe(&t.replace(['\n', '\r'], " ")))
        ),
        Part::Block(t) => format!("\n```\n{}\n```", defuse_mentions(&code_safe(t))),
        // Angle brackets keep Discord from unfurling a preview; `@` is
        // percent-encoded (same URL) so no mention can hide in a link.
        Part::Link(url) => format!("<{}>", url.replace(['<', '>', ' '], "").replace('@', "%40")),
    }
}

fn line(l: &Line) -> String {
    l.iter().map(part).collect()
}

#[cfg(test)]
mod tests {
    
    

    use super::*;
    use crate::chat::fixtures::{assert_inert, review, view};
    use crate::model::RequestState;

    const HOSTILE: &str = "<!channel> <!here> @everyone @here <@123> <@&456> [x](http://evil) ```code``` \u{202e}RTL\u{202e} 🎉";

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
        v.resolve_reason = "@".repeat(10_000);
        v.cluster = HOSTILE.into();
        v.reviews = (0..200)
            .map(|i| {
                review(
                    &format!("{HOSTILE}{i}"),
                    RequestState::Approved,
                    &"`@".repeat(5000),
                )
            })
            .collect();
        v
    }

    fn assert_within_limits(m: &Message) {
        assert!(
            len(&m.content) <= MAX_CONTENT,
            "content of {}",
            len(&m.content)
        );
        assert!(m.embeds.len() <= MAX_EMBEDS);
        let mut total = 0;
        for e in &m.embeds {
            let t = len(e["title"].as_str().unwrap_or_default());
            let d = len(e["description"].as_str().unwrap_or_default());
            let a = len(e["author"]["name"].as_str().unwrap_or_default());
            assert!(t <= MAX_EMBED_TITLE && d <= MAX_EMBED_DESCRIPTION && a <= MAX_EMBED_AUTHOR);
            total += t + d + a;
        }
        assert!(total <= MAX_EMBEDS_TOTAL, "embeds total {total}");
    }

    #[test]
    fn card_matches_the_official_layout() {
        let mut v = view();
        v.request_reason = "please".into();
        let m = render(&Content::Card(&v));
        assert_eq!(
            m.content,
            "**You have a new Role Request:**\n**ID**: 4b1d-id\n**Cluster**: prod\n**User**: `alice`\n**Role(s)**: `editor`\n\
             **Reason**: \n```\nplease\n```\n**Approve**: `tsh request review --approve 4b1d-id`\n\
             **Deny**: `tsh request review --deny 4b1d-id`\n**Status**: ⏳ PENDING\n-# Teleport access request 4b1d-id · card"
        );
        assert!(m.embeds.is_empty());
        assert_eq!(m.body()["allowed_mentions"], json!({"parse": []}));
        assert!(has_marker(&m.content, &Content::Card(&v).marker()));
        assert!(!has_marker(
            &m.content,
            &Content::RequesterNotice(&v).marker()
        ));
    }

    #[test]
    fn links_carry_no_mention() {
        let mut v = view();
        v.link = Some("https://t.example.com/web/requests/@everyone".into());
        let m = render(&Content::Card(&v));
        assert!(
            m.content
                .contains("**Link**: <https://t.example.com/web/requests/%40everyone>"),
            "{}",
            m.content
        );
        assert_inert(&m.content);
    }

    #[test]
    fn reviews_become_embeds_newest_last() {
        let mut v = view();
        v.reviews
            .push(review("bob", RequestState::Approved, "fine"));
        v.reviews.push(review("carol", RequestState::Denied, ""));
        let m = render(&Content::Card(&v));
        assert_eq!(m.embeds.len(), 2);
        assert_eq!(
            m.embeds[0]["title"],
            "✅ Approved request at 14 Nov 23 22:13 UTC"
        );
        assert_eq!(m.embeds[0]["author"]["name"], "bob");
        assert_eq!(m.embeds[0]["color"], GREEN);
        assert_eq!(m.embeds[0]["description"], "Reason:\n```\nfine\n```");
        assert_eq!(m.embeds[1]["color"], RED);
        assert!(m.embeds[1].get("description").is_none());

        v.reviews = (0..25)
            .map(|i| review(&format!("r{i}"), RequestState::Approved, "x"))
            .collect();
        let m = render(&Content::Card(&v));
        assert_eq!(m.embeds.len(), MAX_EMBEDS);
        assert_eq!(m.embeds[0]["title"], "16 earlier reviews are not shown");
        assert_eq!(m.embeds[1]["author"]["name"], "r16");
        assert_eq!(m.embeds[9]["author"]["name"], "r24");
    }

    #[test]
    fn hostile_input_stays_inert_and_within_limits() {
        let v = hostile_view();
        let mut contents = vec![
            Content::Card(&v),
            Content::RequesterNotice(&v),
            Content::Review(&v, 0),
            Content::Review(&v, 999),
        ];
        contents.push(Content::Review(&v, 199));
        for c in contents {
            let m = render(&c);
            assert_within_limits(&m);
            assert_inert(&m.content);
            for e in &m.embeds {
                assert_inert(&e.to_string());
            }
            assert!(
                has_marker(&m.content, &c.marker()),
                "the marker line survives cuts"
            );
        }
        let card = render(&Content::Card(&v)).content;
        assert!(
            card.contains("**Cluster**: \\<!channel\\>"),
            "our text is markdown-escaped"
        );
        assert!(
            card.contains("\\[x\\]\\(http"),
            "masked links are broken up"
        );
    }

    #[test]
    fn pending_cards_with_review_carry_approve_and_deny() {
        let mut v = view();
        assert!(render(&Content::Card(&v)).components.is_empty());
        assert_eq!(render(&Content::Card(&v)).body()["components"], json!([]), "an edit removes buttons");
        v.buttons = true;
        v.approvals_needed = Some(2);
        let m = render(&Content::Card(&v));
        assert_eq!(m.components.len(), 1);
        let row = &m.components[0];
        assert_eq!(row["type"], 1);
        assert_eq!(row["components"][0]["style"], 3);
        assert_eq!(row["components"][0]["custom_id"], "tp:approve:4b1d-id");
        assert_eq!(row["components"][1]["style"], 4);
        assert_eq!(row["components"][1]["label"], "Deny");
        assert!(m.content.contains("**Approvals needed**: 2\n-# Teleport"), "{}", m.content);
        assert!(render(&Content::RequesterNotice(&v)).components.is_empty());
        v.status = Status::Approved;
        assert!(render(&Content::Card(&v)).components.is_empty(), "resolved cards lose their buttons");
        assert_eq!(parse_custom_id("tp:approve:4b1d-id"), Some((Decision::Approve, "4b1d-id")));
        assert_eq!(parse_custom_id("tp:deny:x:y"), Some((Decision::Deny, "x:y")));
        assert_eq!(parse_custom_id("tp:maybe:x"), None);
        assert_eq!(parse_custom_id("other"), None);
        assert_eq!(custom_id(Decision::Approve, &"x".repeat(100)), None);
        let uuid = "0a1b2c3d-0000-4000-8000-123456789abc";
        assert!(len(&custom_id(Decision::Approve, uuid).unwrap()) <= MAX_CUSTOM_ID);
    }

    #[test]
    fn nonces_are_short_stable_and_distinct() {
        let v = view();
        let card = Content::Card(&v).marker();
        let n = nonce("123", &card);
        assert_eq!(n.len(), MAX_NONCE);
        assert_eq!(n, nonce("123", &card));
        assert_ne!(n, nonce("124", &card));
        assert_ne!(n, nonce("123", &Content::RequesterNotice(&v).marker()));
    }

    #[test]
    fn markdown_in_our_text_is_escaped() {
        assert_eq!(escape_markdown("a*b_[x](y)"), "a\\*b\\_\\[x\\]\\(y\\)");
        assert_eq!(escape_markdown("@here"), "@\u{200B}here");
    }
}
