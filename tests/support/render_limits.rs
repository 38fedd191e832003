//! What every rendered message must satisfy, whatever the request held: the
//! chat API's size limits, and no live mention syntax. Shared by
//! `tests/hostile_inputs.rs` and the `render` fuzz target, so both hold the
//! renderers to the same rules. Each check returns the first violation.
#![allow(dead_code)]

use teleport_plugin::chat::discord::render as discord;
use teleport_plugin::chat::mattermost::render as mattermost;
use teleport_plugin::chat::slack::render as slack;
use teleport_plugin::chat::text::len;

/// Zero-width space the renderers put after every `@`.
const ZWSP: char = '\u{200B}';

/// The first `@` not followed by the zero-width space, with some context.
pub fn live_at(s: &str) -> Option<String> {
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '@' && chars.peek().map(|(_, n)| *n) != Some(ZWSP) {
            return Some(context(s, i));
        }
    }
    None
}

/// Up to 40 characters either side of byte offset `i` (a char boundary).
fn context(s: &str, i: usize) -> String {
    let before: String = s[..i]
        .chars()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let after: String = s[i..].chars().take(40).collect();
    format!("{before}{after}")
}

/// Every text object of a Slack message, with where it sits.
fn slack_texts(m: &slack::Message) -> Vec<(String, String)> {
    let mut out = vec![("text".to_string(), m.text.clone())];
    for (i, b) in m.blocks.iter().enumerate() {
        if let Some(t) = b["text"]["text"].as_str() {
            out.push((format!("blocks[{i}].text"), t.to_string()));
        }
        for (j, e) in b["elements"].as_array().into_iter().flatten().enumerate() {
            out.push((
                format!("blocks[{i}].elements[{j}]"),
                e["text"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

/// Slack: ≤ 50 blocks, every text object 1..=3000 characters, a text
/// fallback, and no `<` or `>` at all (so no `<!here>`, `<@U…>` or `<url|…>`).
pub fn check_slack(m: &slack::Message) -> Result<(), String> {
    if m.blocks.is_empty() || m.blocks.len() > slack::MAX_BLOCKS {
        return Err(format!(
            "{} blocks (1..={} allowed)",
            m.blocks.len(),
            slack::MAX_BLOCKS
        ));
    }
    if m.text.trim().is_empty() {
        return Err("no text fallback".into());
    }
    for b in &m.blocks {
        let kind = b["type"].as_str().unwrap_or_default();
        if kind != "section" && kind != "context" {
            return Err(format!("unexpected block type {kind:?}"));
        }
    }
    for (place, t) in slack_texts(m) {
        let n = len(&t);
        if n == 0 || n > slack::MAX_TEXT_OBJECT {
            return Err(format!(
                "{place} has {n} characters (1..={} allowed)",
                slack::MAX_TEXT_OBJECT
            ));
        }
        if let Some(i) = t.find(['<', '>']) {
            return Err(format!(
                "{place} has a raw control character: {:?}",
                context(&t, i)
            ));
        }
    }
    Ok(())
}

/// Discord: content 1..=2000 characters, ≤ 10 embeds within their field and
/// total limits, mentions disabled in the body, and every `@` defused.
pub fn check_discord(m: &discord::Message) -> Result<(), String> {
    let n = len(&m.content);
    if n == 0 || n > discord::MAX_CONTENT {
        return Err(format!(
            "content has {n} characters (1..={} allowed)",
            discord::MAX_CONTENT
        ));
    }
    if m.embeds.len() > discord::MAX_EMBEDS {
        return Err(format!(
            "{} embeds (≤ {} allowed)",
            m.embeds.len(),
            discord::MAX_EMBEDS
        ));
    }
    if m.body()["allowed_mentions"] != serde_json::json!({"parse": []}) {
        return Err("the body does not disable mentions".into());
    }
    let mut total = 0;
    for (i, e) in m.embeds.iter().enumerate() {
        let title = e["title"].as_str().unwrap_or_default();
        let description = e["description"].as_str().unwrap_or_default();
        let author = e["author"]["name"].as_str().unwrap_or_default();
        for (field, text, max) in [
            ("title", title, discord::MAX_EMBED_TITLE),
            ("description", description, discord::MAX_EMBED_DESCRIPTION),
            ("author.name", author, discord::MAX_EMBED_AUTHOR),
        ] {
            if len(text) > max {
                return Err(format!(
                    "embeds[{i}].{field} has {} characters (≤ {max} allowed)",
                    len(text)
                ));
            }
            if let Some(ctx) = live_at(text) {
                return Err(format!("embeds[{i}].{field} has a live @: {ctx:?}"));
            }
        }
        total += len(title) + len(description) + len(author);
    }
    if total > discord::MAX_EMBEDS_TOTAL {
        return Err(format!(
            "embeds hold {total} characters (≤ {} allowed)",
            discord::MAX_EMBEDS_TOTAL
        ));
    }
    if let Some(ctx) = live_at(&m.content) {
        return Err(format!("content has a live @: {ctx:?}"));
    }
    Ok(())
}

/// Mattermost: 1..=16383 characters and every `@` defused (`@channel`,
/// `@all`, `@here` and `@user` stay silent).
pub fn check_mattermost(message: &str) -> Result<(), String> {
    let n = len(message);
    if n == 0 || n > mattermost::MAX_MESSAGE {
        return Err(format!(
            "message has {n} characters (1..={} allowed)",
            mattermost::MAX_MESSAGE
        ));
    }
    if let Some(ctx) = live_at(message) {
        return Err(format!("message has a live @: {ctx:?}"));
    }
    Ok(())
}
