//! Block Kit validation as chat.postMessage and chat.update apply it: the
//! documented size limits, reported the way Slack reports them (an
//! `invalid_blocks` error with JSON-pointer messages).

use serde_json::{Map, Value, json};

use super::{SlackError, err};
use crate::chat::common::char_len;

const MAX_BLOCKS: usize = 50;
const MAX_BLOCK_ID: usize = 255;
const MAX_TEXT_OBJECT: usize = 3000;
const MAX_SECTION_FIELDS: usize = 10;
const MAX_SECTION_FIELD_TEXT: usize = 2000;
const MAX_HEADER_TEXT: usize = 150;
const MAX_CONTEXT_ELEMENTS: usize = 10;
const MAX_ACTIONS_ELEMENTS: usize = 25;
const MAX_MARKDOWN_TEXT: usize = 12_000;
const MAX_BUTTON_TEXT: usize = 75;
const MAX_ACTION_ID: usize = 255;
const MAX_BUTTON_VALUE: usize = 2000;
const MAX_BUTTON_URL: usize = 3000;

/// Block types accepted in messages without a deeper check here.
const OTHER_TYPES: &[&str] = &[
    "image",
    "rich_text",
    "input",
    "video",
    "file",
    "call",
    "table",
    "context_actions",
];

pub(super) fn validate(blocks: &Value) -> Result<(), SlackError> {
    let Some(list) = blocks.as_array() else {
        return Err(err("invalid_blocks_format"));
    };
    let mut errors = Vec::new();
    if list.len() > MAX_BLOCKS {
        errors.push(format!(
            "must be less than {} items [json-pointer:/blocks]",
            MAX_BLOCKS + 1
        ));
    }
    for (i, block) in list.iter().enumerate() {
        check_block(block, &format!("/blocks/{i}"), &mut errors);
    }
    if errors.is_empty() {
        return Ok(());
    }
    let messages: Vec<String> = errors.iter().map(|e| format!("[ERROR] {e}")).collect();
    let mut extra = Map::new();
    extra.insert("errors".into(), json!(errors));
    extra.insert("response_metadata".into(), json!({"messages": messages}));
    Err(SlackError {
        code: "invalid_blocks",
        extra,
    })
}

fn check_block(block: &Value, ptr: &str, errors: &mut Vec<String>) {
    let Some(kind) = block.get("type").and_then(Value::as_str) else {
        errors.push(format!("missing required field: type [json-pointer:{ptr}]"));
        return;
    };
    if let Some(id) = block.get("block_id").and_then(Value::as_str)
        && char_len(id) > MAX_BLOCK_ID
    {
        errors.push(too_long(MAX_BLOCK_ID, &format!("{ptr}/block_id")));
    }
    match kind {
        "section" => check_section(block, ptr, errors),
        "context" => {
            let elements = block.get("elements").and_then(Value::as_array);
            match elements {
                None => errors.push(format!(
                    "missing required field: elements [json-pointer:{ptr}]"
                )),
                Some(e) if e.is_empty() || e.len() > MAX_CONTEXT_ELEMENTS => {
                    errors.push(format!(
                        "must provide between 1 and {MAX_CONTEXT_ELEMENTS} items [json-pointer:{ptr}/elements]"
                    ))
                }
                Some(e) => {
                    for (j, el) in e.iter().enumerate() {
                        let el_ptr = format!("{ptr}/elements/{j}");
                        match el.get("type").and_then(Value::as_str) {
                            Some("plain_text" | "mrkdwn") => {
                                check_text_object(el, &el_ptr, MAX_TEXT_OBJECT, false, errors)
                            }
                            Some("image") => {}
                            _ => errors
                                .push(format!("failed to match all allowed schemas [json-pointer:{el_ptr}]")),
                        }
                    }
                }
            }
        }
        "header" => match block.get("text") {
            Some(t) => check_text_object(t, &format!("{ptr}/text"), MAX_HEADER_TEXT, true, errors),
            None => errors.push(format!("missing required field: text [json-pointer:{ptr}]")),
        },
        "actions" => match block.get("elements").and_then(Value::as_array) {
            Some(e) if !e.is_empty() && e.len() <= MAX_ACTIONS_ELEMENTS => {
                let mut ids = std::collections::HashSet::new();
                for (j, el) in e.iter().enumerate() {
                    let el_ptr = format!("{ptr}/elements/{j}");
                    if el.get("type").and_then(Value::as_str) == Some("button") {
                        check_button(el, &el_ptr, errors);
                    }
                    if let Some(id) = el.get("action_id").and_then(Value::as_str)
                        && !ids.insert(id.to_owned())
                    {
                        errors.push(format!("action_id must be unique within the block [json-pointer:{el_ptr}/action_id]"));
                    }
                }
            }
            _ => errors.push(format!(
                "must provide between 1 and {MAX_ACTIONS_ELEMENTS} items [json-pointer:{ptr}/elements]"
            )),
        },
        "markdown" => match block.get("text").and_then(Value::as_str) {
            Some(t) if char_len(t) > MAX_MARKDOWN_TEXT => {
                errors.push(too_long(MAX_MARKDOWN_TEXT, &format!("{ptr}/text")))
            }
            Some(_) => {}
            None => errors.push(format!("missing required field: text [json-pointer:{ptr}]")),
        },
        "divider" => {}
        other if OTHER_TYPES.contains(&other) => {}
        _ => errors.push(format!("failed to match all allowed schemas [json-pointer:{ptr}]")),
    }
}

/// A button element: the Block Kit reference's limits.
fn check_button(el: &Value, ptr: &str, errors: &mut Vec<String>) {
    match el.get("text") {
        Some(t) => check_text_object(t, &format!("{ptr}/text"), MAX_BUTTON_TEXT, true, errors),
        None => errors.push(format!("missing required field: text [json-pointer:{ptr}]")),
    }
    for (field, max) in [
        ("action_id", MAX_ACTION_ID),
        ("value", MAX_BUTTON_VALUE),
        ("url", MAX_BUTTON_URL),
        ("accessibility_label", MAX_BUTTON_TEXT),
    ] {
        match el.get(field) {
            None => {}
            Some(Value::String(v)) if char_len(v) > max => errors.push(too_long(max, &format!("{ptr}/{field}"))),
            Some(Value::String(v)) if v.is_empty() => {
                errors.push(format!("must be more than 0 characters [json-pointer:{ptr}/{field}]"))
            }
            Some(Value::String(_)) => {}
            Some(_) => errors.push(format!("expected string [json-pointer:{ptr}/{field}]")),
        }
    }
    if let Some(style) = el.get("style")
        && !matches!(style.as_str(), Some("primary" | "danger"))
    {
        errors.push(format!("must be one of primary, danger [json-pointer:{ptr}/style]"));
    }
    if let Some(confirm) = el.get("confirm") {
        let cptr = format!("{ptr}/confirm");
        for (field, max, plain_only) in [("title", 100, true), ("text", 300, false), ("confirm", 30, true), ("deny", 30, true)] {
            match confirm.get(field) {
                Some(t) => check_text_object(t, &format!("{cptr}/{field}"), max, plain_only, errors),
                None => errors.push(format!("missing required field: {field} [json-pointer:{cptr}]")),
            }
        }
        if let Some(style) = confirm.get("style")
            && !matches!(style.as_str(), Some("primary" | "danger"))
        {
            errors.push(format!("must be one of primary, danger [json-pointer:{cptr}/style]"));
        }
    }
}

fn check_section(block: &Value, ptr: &str, errors: &mut Vec<String>) {
    let text = block.get("text");
    let fields = block.get("fields");
    if text.is_none() && fields.is_none() {
        errors.push(format!(
            "must provide either text or fields [json-pointer:{ptr}]"
        ));
    }
    if let Some(t) = text {
        check_text_object(t, &format!("{ptr}/text"), MAX_TEXT_OBJECT, false, errors);
    }
    if let Some(f) = fields {
        match f.as_array() {
            Some(list) if list.len() <= MAX_SECTION_FIELDS => {
                for (j, field) in list.iter().enumerate() {
                    check_text_object(
                        field,
                        &format!("{ptr}/fields/{j}"),
                        MAX_SECTION_FIELD_TEXT,
                        false,
                        errors,
                    );
                }
            }
            _ => errors.push(format!(
                "must be less than {} items [json-pointer:{ptr}/fields]",
                MAX_SECTION_FIELDS + 1
            )),
        }
    }
}

/// A composition text object `{type: plain_text|mrkdwn, text}` of 1..=max characters.
fn check_text_object(
    obj: &Value,
    ptr: &str,
    max: usize,
    plain_only: bool,
    errors: &mut Vec<String>,
) {
    let kind = obj.get("type").and_then(Value::as_str);
    let kind_ok = match kind {
        Some("plain_text") => true,
        Some("mrkdwn") => !plain_only,
        _ => false,
    };
    let text = obj.get("text").and_then(Value::as_str);
    let problem = match text {
        _ if !kind_ok => None,
        None => Some(format!("missing required field: text [json-pointer:{ptr}]")),
        Some("") => Some(format!(
            "must be more than 0 characters [json-pointer:{ptr}/text]"
        )),
        Some(t) if char_len(t) > max => Some(too_long(max, &format!("{ptr}/text"))),
        Some(_) => return,
    };
    errors.push(format!(
        "failed to match all allowed schemas [json-pointer:{ptr}]"
    ));
    errors.extend(problem);
}

fn too_long(max: usize, ptr: &str) -> String {
    format!(
        "must be less than {} characters [json-pointer:{ptr}]",
        max + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(len: usize) -> Value {
        json!({"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(len)}})
    }

    fn errors_of(blocks: Value) -> Vec<String> {
        match validate(&blocks) {
            Ok(()) => Vec::new(),
            Err(e) => {
                assert_eq!(e.code, "invalid_blocks");
                serde_json::from_value(e.extra["errors"].clone()).unwrap()
            }
        }
    }

    #[test]
    fn section_text_limit_is_3000() {
        assert!(errors_of(json!([section(3000)])).is_empty());
        assert_eq!(
            errors_of(json!([section(3001)])),
            vec![
                "failed to match all allowed schemas [json-pointer:/blocks/0/text]",
                "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
            ]
        );
    }

    #[test]
    fn at_most_50_blocks() {
        let ok: Vec<Value> = (0..50).map(|_| json!({"type": "divider"})).collect();
        assert!(errors_of(Value::Array(ok.clone())).is_empty());
        let mut too_many = ok;
        too_many.push(json!({"type": "divider"}));
        assert_eq!(
            errors_of(Value::Array(too_many)),
            vec!["must be less than 51 items [json-pointer:/blocks]"]
        );
    }

    #[test]
    fn context_and_header_limits() {
        let ctx = json!([{"type": "context", "elements": [{"type": "mrkdwn", "text": "y".repeat(3001)}]}]);
        assert!(!errors_of(ctx).is_empty());
        let header = json!([{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]);
        assert!(
            !errors_of(header).is_empty(),
            "headers take plain_text only"
        );
        let header =
            json!([{"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}}]);
        assert!(!errors_of(header).is_empty());
    }

    fn button(extra: Value) -> Value {
        let mut b = json!({"type": "button", "action_id": "approve_button", "text": {"type": "plain_text", "text": "Approve"}, "value": "id"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        json!([{"type": "actions", "block_id": "review_block", "elements": [b]}])
    }

    #[test]
    fn buttons_follow_the_block_kit_limits() {
        assert!(errors_of(button(json!({"style": "primary"}))).is_empty());
        let confirm = json!({"title": {"type": "plain_text", "text": "Sure?"}, "text": {"type": "plain_text", "text": "Really"},
            "confirm": {"type": "plain_text", "text": "Yes"}, "deny": {"type": "plain_text", "text": "No"}, "style": "danger"});
        assert!(errors_of(button(json!({"style": "danger", "confirm": confirm}))).is_empty());
        assert!(!errors_of(button(json!({"style": "green"}))).is_empty());
        assert!(!errors_of(button(json!({"value": "v".repeat(2001)}))).is_empty());
        assert!(!errors_of(button(json!({"text": {"type": "mrkdwn", "text": "*Approve*"}}))).is_empty());
        assert!(!errors_of(button(json!({"text": {"type": "plain_text", "text": "a".repeat(76)}}))).is_empty());
        assert!(!errors_of(button(json!({"confirm": {"title": {"type": "plain_text", "text": "t"}}}))).is_empty());
        let twice = json!([{"type": "actions", "elements": [
            {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "A"}},
            {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "B"}},
        ]}]);
        assert!(!errors_of(twice).is_empty());
    }

    #[test]
    fn unknown_type_and_non_array() {
        assert!(!errors_of(json!([{"type": "banner"}])).is_empty());
        assert_eq!(
            validate(&json!({"type": "section"})).unwrap_err().code,
            "invalid_blocks_format"
        );
    }
}
