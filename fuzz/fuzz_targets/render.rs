//! The Slack, Discord, Mattermost and console renderers on arbitrary access
//! requests (built the way the engine builds them: `AccessRequest` →
//! `RequestView::from_request`). Every card, review reply and requester
//! notice must stay within its chat's limits and carry no live mention
//! (`tests/support/render_limits.rs`), and a Discord message must still end
//! with the marker line that lets it be found again.
//!
//! Inputs can be large from few bytes: a text can be a repeated unit (up
//! to 1 MB) or one of a list of known-hostile strings, and lists can be
//! extended with numbered copies (hundreds of roles or reviews).

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use teleport_plugin::chat::view::web_link;
use teleport_plugin::chat::{Content, RequestView, Status, console, discord, mattermost, slack};
use teleport_plugin::model::{AccessRequest, ResourceId, Review};
use teleport_plugin::teleport::convert::{state_from_pb, time_from_pb};

#[path = "../../tests/support/render_limits.rs"]
mod render_limits;

/// Bytes one expanded text may reach: the largest reason users send.
const MAX_TEXT: usize = 1 << 20;
/// Bytes all expanded texts of one input may reach, to keep runs fast.
const MAX_TOTAL: usize = 4 << 20;
/// Largest input also rendered for the console.
const CONSOLE_MAX_INPUT: usize = 64 << 10;
/// Copies a list may be extended with.
const MAX_COPIES: usize = 600;

const HOSTILE: &[&str] = &[
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U0ALICE001>",
    "<#C123|general>",
    "<https://evil.example|click>",
    "@everyone",
    "@here",
    "@channel",
    "@all",
    "@",
    "[click](https://evil.example)",
    "![img](https://evil.example/p.png)",
    "```",
    "`",
    "&amp;",
    "&",
    "&lt;",
    "<",
    ">",
    "\\",
    "*_~|#",
    "-# small",
    "\n",
    "\r\n",
    "\u{202e}RTL\u{202c}",
    "\u{200B}",
    "\u{FEFF}",
    "שלום עולם",
    "مرحبا",
    "🎉👩‍👩‍👧‍👦🏳️‍🌈",
    "e\u{301}\u{301}\u{301}",
    "\0",
    " ",
];

#[derive(Arbitrary, Debug)]
enum Text {
    Plain(String),
    Repeated(String, u8),
    Hostile(u8),
    Mixed(Vec<u8>),
}

/// Bytes left to expand into.
struct Budget(usize);

impl Budget {
    fn take(&mut self, s: String) -> String {
        if s.len() <= self.0 {
            self.0 -= s.len();
            s
        } else {
            String::new()
        }
    }
}

impl Text {
    fn expand(&self, b: &mut Budget) -> String {
        let s = match self {
            Text::Plain(s) => s.clone(),
            // 2^(n % 21) copies: small repeats are common, a megabyte is possible.
            Text::Repeated(unit, n) => {
                let times = (1usize << (n % 21)).min(MAX_TEXT.min(b.0) / unit.len().max(1));
                unit.repeat(times)
            }
            Text::Hostile(i) => HOSTILE[*i as usize % HOSTILE.len()].to_string(),
            Text::Mixed(picks) => picks
                .iter()
                .map(|i| HOSTILE[*i as usize % HOSTILE.len()])
                .collect(),
        };
        b.take(s)
    }
}

/// Items, plus `copies` numbered variants of them.
#[derive(Arbitrary, Debug)]
struct List {
    items: Vec<Text>,
    copies: u16,
}

impl List {
    fn expand(&self, b: &mut Budget) -> Vec<String> {
        let mut out: Vec<String> = self.items.iter().map(|t| t.expand(b)).collect();
        if !out.is_empty() {
            let base = out.clone();
            for i in 0..(self.copies as usize % MAX_COPIES) {
                let item = &base[i % base.len()];
                // Checked first: formatting a megabyte to throw it away is slow.
                if item.len() + 3 > b.0 {
                    break;
                }
                out.push(b.take(format!("{item}{i}")));
            }
        }
        out
    }
}

#[derive(Arbitrary, Debug)]
struct ArbReview {
    author: Text,
    state: i32,
    reason: Text,
    created: Option<(i64, i32)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Request IDs are Teleport-assigned UUIDs; kept short here.
    id: String,
    cluster: Text,
    user: Text,
    roles: List,
    logins: Vec<(u16, List)>,
    resources: Vec<(Text, Text, Text, Text)>,
    reason: Text,
    resolve_reason: Text,
    state: i32,
    status: u8,
    reviews: Vec<ArbReview>,
    review_copies: u16,
    proxy_addr: Option<Text>,
    long_term: bool,
    promoted_to: Option<Text>,
    created: Option<(i64, i32)>,
    expires: Option<(i64, i32)>,
    review_index: u16,
}

fn time((seconds, nanos): (i64, i32)) -> Option<std::time::SystemTime> {
    time_from_pb(Some(&prost_types::Timestamp { seconds, nanos }))
}

/// The view, and how many bytes of text it was expanded to.
fn view(input: &Input) -> (RequestView, usize) {
    let b = &mut Budget(MAX_TOTAL);
    let id: String = input.id.chars().take(64).collect();
    let mut req = AccessRequest::new_pending(id, input.user.expand(b), input.roles.expand(b));
    req.state = state_from_pb(input.state);
    req.request_reason = input.reason.expand(b);
    req.resolve_reason = input.resolve_reason.expand(b);
    req.created = input.created.and_then(time);
    req.expires = input.expires.and_then(time);
    req.long_term = input.long_term;
    req.promoted_to = input.promoted_to.as_ref().map(|t| t.expand(b));
    req.resources = input
        .resources
        .iter()
        .map(|(c, k, n, s)| ResourceId {
            cluster: c.expand(b),
            kind: k.expand(b),
            name: n.expand(b),
            sub_resource: s.expand(b),
        })
        .collect();
    let reviews: Vec<Review> = input
        .reviews
        .iter()
        .map(|r| Review {
            author: r.author.expand(b),
            roles: Vec::new(),
            proposed_state: state_from_pb(r.state),
            reason: r.reason.expand(b),
            created: r.created.and_then(time),
        })
        .collect();
    if !reviews.is_empty() {
        let copies = input.review_copies as usize % MAX_COPIES;
        for r in reviews.iter().cycle().take(reviews.len() + copies) {
            let size = r.author.len() + r.reason.len();
            if size > b.0 {
                break;
            }
            b.0 -= size;
            req.reviews.push(r.clone());
        }
    }
    let logins: BTreeMap<String, Vec<String>> = input
        .logins
        .iter()
        .filter_map(|(i, l)| {
            Some((
                req.roles.get(*i as usize % req.roles.len().max(1))?.clone(),
                l.expand(b),
            ))
        })
        .collect();
    let status = match input.status % 5 {
        0 => Status::Pending,
        1 => Status::Approved,
        2 => Status::Denied,
        3 => Status::Expired,
        _ => Status::Promoted,
    };
    let link = input
        .proxy_addr
        .as_ref()
        .and_then(|a| web_link(&a.expand(b), true, &req.id));
    let cluster = input.cluster.expand(b);
    (
        RequestView::from_request(&req, &cluster, link, logins, status),
        MAX_TOTAL - b.0,
    )
}

/// Whether `id` looks like a Teleport resource name, for which the Discord
/// marker line must survive.
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fuzz_target!(|input: Input| {
    let (v, size) = view(&input);
    let review_index = input.review_index as usize % (v.reviews.len() + 2);
    for content in [
        Content::Card(&v),
        Content::RequesterNotice(&v),
        Content::Review(&v, review_index),
    ] {
        let what = content.marker().kind_str();
        if let Err(e) = render_limits::check_slack(&slack::render::render(&content)) {
            panic!("slack {what}: {e}");
        }
        let d = discord::render::render(&content);
        if let Err(e) = render_limits::check_discord(&d) {
            panic!("discord {what}: {e}");
        }
        if plain_id(&v.id) {
            assert!(
                discord::render::has_marker(&d.content, &content.marker()),
                "discord {what}: marker line lost"
            );
        }
        if let Err(e) = render_limits::check_mattermost(&mattermost::render::render(&content)) {
            panic!("mattermost {what}: {e}");
        }
        // The console prints everything and has no limit to check; on large
        // inputs it would take most of the run time for nothing new.
        if size <= CONSOLE_MAX_INPUT {
            let _ = console::render(&content);
        }
    }
});
