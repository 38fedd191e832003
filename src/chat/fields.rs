//! What cards, review replies and requester notices say, as lines of typed
//! parts, in the order of the official plugins' shared field block. Each
//! renderer decides how a part looks and how it escapes user text; raw user
//! text is cut here (visibly) so every renderer starts from bounded input.

use std::time::SystemTime;

use super::text::truncate;
use super::view::review_status;
use super::{RequestView, Status};

/// One piece of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A field name, rendered bold and followed by a colon.
    Label(&'static str),
    /// Our own wording or a Teleport-assigned value (still escaped).
    Text(String),
    /// User-supplied text on one line: inline code.
    Code(String),
    /// User-supplied text that may span lines: a code block.
    Block(String),
    /// A URL built from configuration.
    Link(String),
}

pub type Line = Vec<Part>;

/// Cuts applied to raw user text, in characters.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request, resolution and review reasons (the official cut is 500).
    pub reason: usize,
    /// Comma-joined lists (roles, resources, logins).
    pub list: usize,
    /// Single names (user, role, review author).
    pub name: usize,
    /// Per-role lines shown when logins are known; the rest are counted.
    pub role_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            reason: 500,
            list: 400,
            name: 100,
            role_lines: 20,
        }
    }
}

/// A request card: title, field lines, and the status lines shown last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub title: &'static str,
    pub fields: Vec<Line>,
    pub status: Vec<Line>,
}

pub fn card(v: &RequestView, lim: &Limits) -> Card {
    let mut fields: Vec<Line> = vec![
        vec![Part::Label("ID"), Part::Text(truncate(&v.id, lim.name))],
        vec![
            Part::Label("Cluster"),
            Part::Text(truncate(&v.cluster, lim.name)),
        ],
    ];
    if !v.user.trim().is_empty() {
        fields.push(vec![
            Part::Label("User"),
            Part::Code(truncate(&v.user, lim.name)),
        ]);
    }
    let mut roles = v.roles.clone();
    roles.sort();
    if v.logins_by_role.is_empty() {
        fields.push(vec![
            Part::Label("Role(s)"),
            Part::Code(truncate(&roles.join(", "), lim.list)),
        ]);
    } else {
        for role in roles.iter().take(lim.role_lines) {
            let logins = v
                .logins_by_role
                .get(role)
                .map(|l| l.join(", "))
                .unwrap_or_default();
            let logins = if logins.trim().is_empty() {
                "-".to_string()
            } else {
                truncate(&logins, lim.list)
            };
            fields.push(vec![
                Part::Label("Role"),
                Part::Code(truncate(role, lim.name)),
                Part::Text(" ".into()),
                Part::Label("Login(s)"),
                Part::Code(logins),
            ]);
        }
        if roles.len() > lim.role_lines {
            fields.push(vec![Part::Text(format!(
                "… and {} more roles",
                roles.len() - lim.role_lines
            ))]);
        }
    }
    if !v.resources.is_empty() {
        let mut resources = v.resources.clone();
        resources.sort();
        fields.push(vec![
            Part::Label("Resource(s)"),
            Part::Code(truncate(&resources.join(", "), lim.list)),
        ]);
    }
    if !v.request_reason.trim().is_empty() {
        fields.push(vec![
            Part::Label("Reason"),
            Part::Block(truncate(&v.request_reason, lim.reason)),
        ]);
    }
    match (&v.link, v.tsh_commands()) {
        (Some(link), _) => fields.push(vec![Part::Label("Link"), Part::Link(link.clone())]),
        (None, Some((approve, deny))) => {
            fields.push(vec![Part::Label("Approve"), Part::Code(approve)]);
            fields.push(vec![Part::Label("Deny"), Part::Code(deny)]);
        }
        (None, None) => {}
    }

    let mut status = vec![vec![
        Part::Label("Status"),
        Part::Text(status_text(v.status)),
    ]];
    if let Some(target) = v.promoted_to.as_deref().filter(|t| !t.trim().is_empty()) {
        status.push(vec![
            Part::Label("Promoted to"),
            Part::Code(truncate(target, lim.name)),
        ]);
    }
    if !v.resolve_reason.trim().is_empty() {
        status.push(vec![
            Part::Label("Resolution reason"),
            Part::Block(truncate(&v.resolve_reason, lim.reason)),
        ]);
    }
    Card {
        title: v.title(),
        fields,
        status,
    }
}

/// "⏳ PENDING", "✅ APPROVED", ...
pub fn status_text(s: Status) -> String {
    format!("{} {}", s.emoji(), s.as_str())
}

/// The reply announcing review `index`:
/// "<author> reviewed the request at <time>. Resolution: ✅ APPROVED. Reason: ...".
pub fn review(v: &RequestView, index: usize, lim: &Limits) -> Vec<Line> {
    let Some(r) = v.reviews.get(index) else {
        return vec![vec![Part::Text(format!(
            "Review number {} of this request was recorded.",
            index + 1
        ))]];
    };
    let when = match r.created {
        Some(t) => format!(" reviewed the request at {}.", format_time(t)),
        None => " reviewed the request.".to_string(),
    };
    let mut lines = vec![
        vec![Part::Code(truncate(&r.author, lim.name)), Part::Text(when)],
        vec![Part::Text(format!(
            "Resolution: {}.",
            status_text(review_status(r))
        ))],
    ];
    if !r.reason.trim().is_empty() {
        lines.push(vec![
            Part::Text("Reason: ".into()),
            Part::Block(truncate(&r.reason, lim.reason)),
        ]);
    }
    lines
}

/// The DM to the requester: "Your access request <id> for roles ... is now ✅ APPROVED."
pub fn notice(v: &RequestView, lim: &Limits) -> Vec<Line> {
    let mut roles = v.roles.clone();
    roles.sort();
    let mut lines = vec![vec![
        Part::Text(format!(
            "Your access request {} for roles ",
            truncate(&v.id, lim.name)
        )),
        Part::Code(truncate(&roles.join(", "), lim.list)),
        Part::Text(format!(" is now {}.", status_text(v.status))),
    ]];
    if !v.resolve_reason.trim().is_empty() {
        lines.push(vec![
            Part::Label("Resolution reason"),
            Part::Block(truncate(&v.resolve_reason, lim.reason)),
        ]);
    }
    lines
}

/// One-line summary for notification previews (Slack's `text` fallback).
/// Raw: the renderer escapes it.
pub fn summary(v: &RequestView, lim: &Limits) -> String {
    let mut roles = v.roles.clone();
    roles.sort();
    let user = if v.user.trim().is_empty() {
        "someone".to_string()
    } else {
        truncate(v.user.trim(), lim.name)
    };
    let roles = truncate(&roles.join(", "), lim.list);
    format!(
        "{} {user} requested {roles} (request {}). Status: {}",
        v.title(),
        v.id,
        status_text(v.status)
    )
}

/// Review times the way the official plugins show them (RFC 822, UTC).
pub fn format_time(t: SystemTime) -> String {
    let fmt = time::macros::format_description!(
        "[day] [month repr:short] [year repr:last_two] [hour]:[minute] UTC"
    );
    // `OffsetDateTime::from(SystemTime)` panics outside years ±9999, and a
    // review carries whatever time Teleport sent.
    let dt = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => time::Duration::try_from(d)
            .ok()
            .and_then(|d| time::OffsetDateTime::UNIX_EPOCH.checked_add(d)),
        Err(e) => time::Duration::try_from(e.duration())
            .ok()
            .and_then(|d| time::OffsetDateTime::UNIX_EPOCH.checked_sub(d)),
    };
    dt.and_then(|dt| dt.format(&fmt).ok())
        .unwrap_or_else(|| "an unknown time".into())
}

/// Joins rendered `head` lines and always-kept `tail` lines with `sep`,
/// within `max` characters: head lines that do not fit are dropped (and
/// counted in a visible note); if even that fails, the text is cut.
pub fn fit_lines(head: &[String], tail: &[String], sep: &str, max: usize) -> String {
    let len = |parts: &[&str]| -> usize {
        parts.iter().map(|p| super::text::len(p)).sum::<usize>()
            + super::text::len(sep) * parts.len().saturating_sub(1)
    };
    let all: Vec<&str> = head.iter().chain(tail).map(String::as_str).collect();
    if len(&all) <= max {
        return all.join(sep);
    }
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    let mut kept: Vec<&str> = Vec::new();
    let mut dropped = 0;
    for (i, line) in head.iter().enumerate() {
        let note = omitted_note(head.len() - i);
        let mut candidate = kept.clone();
        candidate.push(line);
        candidate.push(&note);
        candidate.extend(&tail);
        if dropped == 0 && len(&candidate) <= max {
            kept.push(line);
        } else {
            dropped += 1;
        }
    }
    let note = omitted_note(dropped);
    if dropped > 0 {
        kept.push(&note);
    }
    kept.extend(&tail);
    truncate(&kept.join(sep), max)
}

/// The longest cut of `raw` whose rendering fits `max` characters: escaping
/// is never split (a cut between `@` and its defusing character would undo it).
pub fn fit_rendered(raw: &str, max: usize, render: impl Fn(&str) -> String) -> String {
    let full = render(raw);
    if super::text::len(&full) <= max {
        return full;
    }
    let (mut lo, mut hi) = (0, super::text::len(raw));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if super::text::len(&render(&truncate(raw, mid))) <= max {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let best = render(&truncate(raw, lo));
    if super::text::len(&best) <= max {
        best
    } else {
        truncate(&render(""), max)
    }
}

fn omitted_note(n: usize) -> String {
    format!(
        "… ({n} more line{} not shown; see the request in Teleport)",
        if n == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::model::{AccessRequest, RequestState, Review};

    fn view() -> RequestView {
        let r = AccessRequest::new_pending("req-1", "alice", vec!["zeta".into(), "alpha".into()]);
        RequestView::from_request(&r, "prod", None, BTreeMap::new(), Status::Pending)
    }

    fn labels(lines: &[Line]) -> Vec<&'static str> {
        lines
            .iter()
            .filter_map(|l| match l.first() {
                Some(Part::Label(n)) => Some(*n),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn card_follows_the_official_field_order() {
        let mut v = view();
        v.request_reason = "need it".into();
        let c = card(&v, &Limits::default());
        assert_eq!(c.title, "You have a new Role Request:");
        assert_eq!(
            labels(&c.fields),
            [
                "ID", "Cluster", "User", "Role(s)", "Reason", "Approve", "Deny"
            ]
        );
        assert_eq!(
            c.fields[3][1],
            Part::Code("alpha, zeta".into()),
            "roles are sorted"
        );
        assert_eq!(labels(&c.status), ["Status"]);

        v.link = Some("https://t/web/requests/req-1".into());
        v.status = Status::Denied;
        v.resolve_reason = "no".into();
        let c = card(&v, &Limits::default());
        assert_eq!(
            labels(&c.fields),
            ["ID", "Cluster", "User", "Role(s)", "Reason", "Link"]
        );
        assert_eq!(labels(&c.status), ["Status", "Resolution reason"]);
        assert_eq!(c.status[0][1], Part::Text("❌ DENIED".into()));
    }

    #[test]
    fn roles_with_logins_get_one_line_each_up_to_the_limit() {
        let mut v = view();
        v.roles = (0..30).map(|i| format!("r{i:02}")).collect();
        v.logins_by_role = BTreeMap::from([(
            "r00".to_string(),
            vec!["root".to_string(), "ubuntu".to_string()],
        )]);
        let c = card(&v, &Limits::default());
        let role_lines: Vec<&Line> = c
            .fields
            .iter()
            .filter(|l| l.first() == Some(&Part::Label("Role")))
            .collect();
        assert_eq!(role_lines.len(), 20);
        assert_eq!(role_lines[0][4], Part::Code("root, ubuntu".into()));
        assert_eq!(role_lines[1][4], Part::Code("-".into()));
        assert!(
            c.fields
                .iter()
                .any(|l| l == &vec![Part::Text("… and 10 more roles".into())])
        );
    }

    #[test]
    fn reviews_and_notices_read_like_the_official_replies() {
        let mut v = view();
        v.reviews.push(Review {
            author: "bob".into(),
            roles: vec![],
            proposed_state: RequestState::Approved,
            reason: "ok".into(),
            created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 365)),
        });
        let r = review(&v, 0, &Limits::default());
        assert_eq!(
            r[0],
            vec![
                Part::Code("bob".into()),
                Part::Text(" reviewed the request at 01 Jan 71 00:00 UTC.".into())
            ]
        );
        assert_eq!(r[1], vec![Part::Text("Resolution: ✅ APPROVED.".into())]);
        assert_eq!(r[2][1], Part::Block("ok".into()));
        assert_eq!(
            review(&v, 5, &Limits::default()).len(),
            1,
            "unknown reviews do not panic"
        );

        v.status = Status::Approved;
        let n = notice(&v, &Limits::default());
        assert_eq!(n[0][2], Part::Text(" is now ✅ APPROVED.".into()));
    }

    #[test]
    fn times_outside_the_calendar_do_not_panic() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert_eq!(format_time(far), "an unknown time");
        let early = SystemTime::UNIX_EPOCH - Duration::from_secs(86_400 * 365);
        assert_eq!(format_time(early), "01 Jan 69 00:00 UTC");
    }

    #[test]
    fn raw_text_is_cut_before_rendering() {
        let mut v = view();
        v.request_reason = "x".repeat(1_000_000);
        let c = card(&v, &Limits::default());
        let Some(Part::Block(reason)) = c
            .fields
            .iter()
            .find_map(|l| l.get(1).filter(|p| matches!(p, Part::Block(_))))
            .cloned()
        else {
            panic!("no reason")
        };
        assert_eq!(super::super::text::len(&reason), 500);
    }

    #[test]
    fn fit_rendered_never_splits_escapes() {
        let double = |s: &str| s.replace('@', "@\u{200B}");
        let out = fit_rendered(&"@".repeat(100), 40, double);
        assert!(super::super::text::len(&out) <= 40);
        assert!(out.ends_with(super::super::text::TRUNCATED));
        assert!(!out.contains("@…"), "{out}");
        assert_eq!(fit_rendered("ab", 10, double), "ab");
    }

    #[test]
    fn fit_lines_drops_whole_lines_and_says_so() {
        let head: Vec<String> = (0..10)
            .map(|i| format!("line {i} {}", "x".repeat(20)))
            .collect();
        let tail = vec!["status".to_string()];
        assert_eq!(fit_lines(&head[..2], &tail, "\n", 1000).lines().count(), 3);
        let out = fit_lines(&head, &tail, "\n", 200);
        assert!(super::super::text::len(&out) <= 200, "{out}");
        assert!(out.ends_with("status"));
        assert!(out.contains("more lines not shown"));
        let tiny = fit_lines(&head, &["y".repeat(500)], "\n", 50);
        assert_eq!(super::super::text::len(&tiny), 50);
    }
}
