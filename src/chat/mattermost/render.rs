//! Mattermost rendering: one markdown post per card, reply or notice, in the
//! shared field layout (title, ID, cluster, user, roles, resources, reason,
//! link or `tsh` commands, status, resolution reason), plus the props that
//! identify what the post is about.
//!
//! Safety: `@` is defused (`@channel`, `@all`, `@here`, `@user` do not
//! notify), user text sits in code spans/blocks with backticks neutralised,
//! and markdown in our own text is escaped so links cannot be forged.
//! Limits: a post holds at most 16383 characters.

use serde_json::{Value, json};

use crate::chat::fields::{self, Limits, Line, Part, fit_lines};
use crate::chat::text::{code_safe, defuse_mentions, escape_markdown};
use crate::chat::{Content, Marker};

/// Longest post message, in characters.
pub const MAX_MESSAGE: usize = 16_383;
pub const PROP_REQUEST_ID: &str = "teleport_request_id";
pub const PROP_KIND: &str = "teleport_kind";

pub fn render(content: &Content<'_>) -> String {
    let lim = Limits::default();
    match content {
        Content::Card(v) => {
            let card = fields::card(v, &lim);
            let mut head = vec![format!("**{}**", escape_markdown(card.title))];
            head.extend(card.fields.iter().map(line));
            let mut tail: Vec<String> = card.status.iter().map(line).collect();
            if let Some(n) = v.approvals_needed.filter(|n| *n > 0 && v.status == crate::chat::Status::Pending) {
                tail.push(format!("**Approvals needed**: {n} more"));
            }
            fit_lines(&head, &tail, "\n", MAX_MESSAGE)
        }
        Content::Review(v, i) => {
            let lines: Vec<String> = fields::review(v, *i, &lim).iter().map(line).collect();
            fit_lines(&lines, &[], "\n", MAX_MESSAGE)
        }
        Content::RequesterNotice(v) => {
            let lines: Vec<String> = fields::notice(v, &lim).iter().map(line).collect();
            fit_lines(&lines, &[], "\n", MAX_MESSAGE)
        }
    }
}

/// Post props naming the request and what the post is.
pub fn props(marker: &Marker) -> Value {
    json!({PROP_REQUEST_ID: marker.request_id, PROP_KIND: marker.kind_str()})
}

/// Whether a post's props are `marker`'s.
pub fn has_marker(post: &Value, marker: &Marker) -> bool {
    post["props"][PROP_REQUEST_ID] == marker.request_id.as_str()
        && post["props"][PROP_KIND] == marker.kind_str().as_str()
}

/// A `pending_post_id` derived from where and what we post: Mattermost
/// returns the existing post for a repeat with the same id (for a while).
pub fn pending_post_id(channel_id: &str, marker: &Marker) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [channel_id, &marker.request_id, &marker.kind_str()] {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    format!("teleport:{}", &hex::encode(ctx.finish().as_ref())[..32])
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
        Part::Link(url) => {
            // Percent-encoded (same URL): parentheses would end the link,
            // and Mattermost reads `@channel` even inside a URL.
            let url = url
                .replace('(', "%28")
                .replace(')', "%29")
                .replace(' ', "%20")
                .replace('@', "%40");
            format!("[{}]({url})", escape_markdown(&url))
        }
    }
}

fn line(l: &Line) -> String {
    l.iter().map(part).collect()
}

#[cfg(test)]
mod tests {
    
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::chat::fixtures::{assert_inert, view};
    use crate::chat::text::len;
    use crate::chat::Status;
    use crate::model::{RequestState, Review};

    const HOSTILE: &str = "@channel @all @here @bob [x](http://evil) ![img](http://evil/p.png) ```code``` \u{202e}RTL 🎉";

    #[test]
    fn links_carry_no_mention() {
        let mut v = view();
        v.link = Some("https://t.example.com/web/requests/@channel".into());
        let card = render(&Content::Card(&v));
        assert!(
            card.contains("(https://t.example.com/web/requests/%40channel)"),
            "{card}"
        );
        assert_inert(&card);
    }

    #[test]
    fn card_uses_the_shared_layout() {
        let mut v = view();
        v.request_reason = "please".into();
        v.link = Some("https://t.example.com/web/requests/4b1d-id".into());
        v.status = Status::Approved;
        assert_eq!(
            render(&Content::Card(&v)),
            "**You have a new Role Request:**\n**ID**: 4b1d-id\n**Cluster**: prod\n**User**: `alice`\n**Role(s)**: `editor`\n\
             **Reason**: \n```\nplease\n```\n**Link**: [https://t.example.com/web/requests/4b1d-id](https://t.example.com/web/requests/4b1d-id)\n\
             **Status**: ✅ APPROVED"
        );
    }

    #[test]
    fn replies_and_notices_read_like_the_official_ones() {
        let mut v = view();
        v.reviews.push(Review {
            author: "bob".into(),
            roles: vec![],
            proposed_state: RequestState::Approved,
            reason: String::new(),
            created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        });
        assert_eq!(
            render(&Content::Review(&v, 0)),
            "`bob` reviewed the request at 14 Nov 23 22:13 UTC.\nResolution: ✅ APPROVED."
        );
        v.status = Status::Denied;
        v.resolve_reason = "no".into();
        assert_eq!(
            render(&Content::RequesterNotice(&v)),
            "Your access request 4b1d-id for roles `editor` is now ❌ DENIED.\n**Resolution reason**: \n```\nno\n```"
        );
    }

    #[test]
    fn hostile_input_stays_inert_and_within_limits() {
        let mut v = view();
        v.user = HOSTILE.into();
        v.cluster = HOSTILE.into();
        v.roles = (0..500).map(|i| format!("{HOSTILE}{i}")).collect();
        v.logins_by_role = v
            .roles
            .iter()
            .map(|r| (r.clone(), vec![HOSTILE.to_string(); 3]))
            .collect();
        v.request_reason = HOSTILE.repeat(1_000_000 / HOSTILE.len());
        v.resolve_reason = "@".repeat(20_000);
        v.reviews = (0..200)
            .map(|i| Review {
                author: format!("{HOSTILE}{i}"),
                roles: vec![],
                proposed_state: RequestState::Denied,
                reason: HOSTILE.repeat(100),
                created: None,
            })
            .collect();
        for c in [
            Content::Card(&v),
            Content::RequesterNotice(&v),
            Content::Review(&v, 199),
            Content::Review(&v, 500),
        ] {
            let m = render(&c);
            assert!(len(&m) <= MAX_MESSAGE);
            assert_inert(&m);
        }
        let card = render(&Content::Card(&v));
        assert!(card.contains("**Cluster**: @\u{200B}channel @\u{200B}all @\u{200B}here @\u{200B}bob \\[x\\]\\(http://evil\\) !\\[img\\]"), "{}", &card[..400]);
    }

    #[test]
    fn props_and_pending_ids_identify_the_post() {
        let v = view();
        let m = Content::Card(&v).marker();
        let post = json!({"props": props(&m)});
        assert!(has_marker(&post, &m));
        assert!(!has_marker(&post, &Content::RequesterNotice(&v).marker()));
        assert_eq!(pending_post_id("c1", &m), pending_post_id("c1", &m));
        assert_ne!(pending_post_id("c1", &m), pending_post_id("c2", &m));
    }
}
