//! Text helpers shared by the renderers: visible truncation, neutralised
//! backticks and mentions. Chat-specific escaping lives with each renderer.

/// Marker appended to anything cut short, so readers know text is missing.
pub const TRUNCATED: &str = "… (truncated)";

/// Zero-width no-break space: placed after a backtick, it stops user text from
/// closing our code spans (as the official plugins do).
const ZWNBSP: char = '\u{FEFF}';
/// Zero-width space: placed after `@`, it stops `@here`-style pings.
const ZWSP: char = '\u{200B}';

/// Cuts `s` to at most `max` characters (not bytes), ending with
/// [`TRUNCATED`] when anything was removed.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(TRUNCATED.chars().count());
    let mut out: String = s.chars().take(keep).collect();
    out.push_str(TRUNCATED);
    out
}

/// Trims, replaces empty values with "(empty)" and neutralises backticks.
pub fn code_safe(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() {
        return "(empty)".into();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        out.push(c);
        if c == '`' {
            out.push(ZWNBSP);
        }
    }
    out
}

/// Neutralises `@mentions` (`@here`, `@everyone`, `@channel`, `@user`).
pub fn defuse_mentions(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        out.push(c);
        if c == '@' {
            out.push(ZWSP);
        }
    }
    out
}

/// Backslash-escapes markdown (Discord, Mattermost) and defuses mentions, for
/// text of ours that is not in a code span.
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\*_~`|<>[]()#".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    defuse_mentions(&out)
}

/// Number of characters (what chat APIs count).
pub fn len(s: &str) -> usize {
    s.chars().count()
}

/// Whether `s` looks like a bare email address (`local@domain.tld`), the form
/// recipients and Teleport user names take when they name a chat user.
pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>()[],;:\\\"@/".contains(c);
    !local.is_empty()
        && !local.chars().any(bad)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.chars().any(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_is_visible_and_counts_characters() {
        assert_eq!(truncate("short", 10), "short");
        let t = truncate(&"é".repeat(100), 20);
        assert_eq!(len(&t), 20);
        assert!(t.ends_with(TRUNCATED));
    }

    #[test]
    fn backticks_cannot_close_code_spans() {
        assert_eq!(code_safe("a`b"), "a`\u{FEFF}b");
        assert_eq!(code_safe("   "), "(empty)");
    }

    #[test]
    fn emails_are_recognised() {
        assert!(looks_like_email("alice@example.com"));
        assert!(looks_like_email("a.b+c@sub.example.co"));
        for s in ["alice", "#general", "team/channel", "@here", "a@b", "a b@c.d", "<a@b.c>", "a@b.c/d", "a@@b.c", "@x.y"] {
            assert!(!looks_like_email(s), "{s}");
        }
    }

    #[test]
    fn mentions_are_defused() {
        assert_eq!(defuse_mentions("@here"), "@\u{200B}here");
    }
}
