//! Discord interactions as our transports see them (pure): which are clicks
//! on our buttons, the [`Click`] they make, and the responses we send.
//!
//! The clicker is `member.user` in a server and `user` in a DM; the card is
//! `channel_id` + `message.id`. The interaction token authenticates the
//! answer (callback, `@original` edits) for 15 minutes: it is a secret,
//! kept out of `Debug` and logs.

use std::fmt;

use serde_json::{Value, json};

use super::render;
use crate::chat::MessageRef;
use crate::chat::click::Click;

/// Interaction types.
const PING: u64 = 1;
const MESSAGE_COMPONENT: u64 = 3;
/// Callback types.
pub const PONG: u64 = 1;
const CHANNEL_MESSAGE_WITH_SOURCE: u64 = 4;
const DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: u64 = 5;
/// Message flag: shown to the clicker alone.
pub const EPHEMERAL: u64 = 1 << 6;

/// The continuation token of an interaction.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(redacted)")
    }
}

/// A click on one of our buttons, with what answering it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButtonClick {
    pub interaction_id: String,
    pub application_id: String,
    pub token: Token,
    pub click: Click,
}

/// What an interaction is to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Ping,
    Click(Box<ButtonClick>),
    /// Something we do not handle (another type, another app's button, a
    /// payload missing what a click needs); the text says what, for logs.
    Other(&'static str),
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Reads an interaction object (Gateway `INTERACTION_CREATE` data or an
/// HTTP interaction body).
pub fn parse(v: &Value) -> Parsed {
    match v.get("type").and_then(Value::as_u64) {
        Some(PING) => return Parsed::Ping,
        Some(MESSAGE_COMPONENT) => {}
        _ => return Parsed::Other("not a button click"),
    }
    let Some(custom_id) = v.get("data").and_then(|d| str_of(d, "custom_id")) else {
        return Parsed::Other("a component interaction without custom_id");
    };
    let Some((decision, request_id)) = render::parse_custom_id(custom_id) else {
        return Parsed::Other("not one of our buttons");
    };
    let user = v.get("member").and_then(|m| m.get("user")).or_else(|| v.get("user"));
    let (Some(id), Some(app), Some(token), Some(channel), Some(user)) =
        (str_of(v, "id"), str_of(v, "application_id"), str_of(v, "token"), str_of(v, "channel_id"), user)
    else {
        return Parsed::Other("a click without id, application_id, token, channel_id or user");
    };
    let Some(user_id) = str_of(user, "id") else {
        return Parsed::Other("a click without a user id");
    };
    let Some(message_id) = v.get("message").and_then(|m| str_of(m, "id")) else {
        return Parsed::Other("a click without its message");
    };
    let user_name = str_of(user, "username").unwrap_or_default().to_string();
    let message = MessageRef { channel_id: channel.to_string(), message_id: message_id.to_string() };
    Parsed::Click(Box::new(ButtonClick {
        interaction_id: id.to_string(),
        application_id: app.to_string(),
        token: Token(token.to_string()),
        click: Click {
            chat: "discord",
            user_id: user_id.to_string(),
            user_name,
            request_id: request_id.to_string(),
            decision,
            // Same for a redelivery and a double click: who, which card,
            // which button.
            dedupe_key: format!("discord\u{0}{user_id}\u{0}{channel}\u{0}{message_id}\u{0}{custom_id}"),
            message: Some(message),
        },
    }))
}

/// The first answer to a click: "thinking…", seen by the clicker alone.
pub fn deferred_ephemeral() -> Value {
    json!({"type": DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, "data": {"flags": EPHEMERAL}})
}

/// An immediate ephemeral answer (for interactions we do not handle).
pub fn ephemeral_message(text: &str) -> Value {
    json!({"type": CHANNEL_MESSAGE_WITH_SOURCE, "data": {"content": text, "flags": EPHEMERAL, "allowed_mentions": {"parse": []}}})
}

/// The body that replaces the deferred answer with the outcome.
pub fn outcome_edit(text: &str) -> Value {
    json!({"content": crate::chat::text::truncate(text, render::MAX_CONTENT), "allowed_mentions": {"parse": []}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::click::Decision;

    fn click_json() -> Value {
        json!({
            "id": "900", "application_id": "1", "type": 3, "token": "tok-secret", "version": 1,
            "channel_id": "42", "guild_id": "7",
            "member": {"user": {"id": "555", "username": "alice"}},
            "data": {"custom_id": "tp:deny:req-1", "component_type": 2},
            "message": {"id": "77", "channel_id": "42"},
        })
    }

    #[test]
    fn a_click_on_our_button_becomes_a_click() {
        let Parsed::Click(c) = parse(&click_json()) else { panic!("not a click") };
        assert_eq!(c.interaction_id, "900");
        assert_eq!(c.click.user_id, "555");
        assert_eq!(c.click.user_name, "alice");
        assert_eq!(c.click.request_id, "req-1");
        assert_eq!(c.click.decision, Decision::Deny);
        assert_eq!(c.click.message, Some(MessageRef { channel_id: "42".into(), message_id: "77".into() }));
        assert!(!format!("{c:?}").contains("tok-secret"), "the token stays out of Debug");
        // A redelivery (same id) and a second click (new id) share the key.
        let mut again = click_json();
        again["id"] = json!("901");
        again["token"] = json!("other");
        let Parsed::Click(d) = parse(&again) else { panic!() };
        assert_eq!(c.click.dedupe_key, d.click.dedupe_key);
        let mut other_user = click_json();
        other_user["member"]["user"]["id"] = json!("556");
        let Parsed::Click(e) = parse(&other_user) else { panic!() };
        assert_ne!(c.click.dedupe_key, e.click.dedupe_key);
    }

    #[test]
    fn dm_clicks_use_user_and_others_are_not_clicks() {
        let mut dm = click_json();
        dm.as_object_mut().unwrap().remove("member");
        dm["user"] = json!({"id": "600", "username": "bob"});
        let Parsed::Click(c) = parse(&dm) else { panic!() };
        assert_eq!(c.click.user_id, "600");
        assert_eq!(parse(&json!({"type": 1})), Parsed::Ping);
        let mut foreign = click_json();
        foreign["data"]["custom_id"] = json!("someone-else:1");
        assert!(matches!(parse(&foreign), Parsed::Other(_)));
        let mut no_message = click_json();
        no_message.as_object_mut().unwrap().remove("message");
        assert!(matches!(parse(&no_message), Parsed::Other(_)));
        assert!(matches!(parse(&json!({"type": 2})), Parsed::Other(_)));
        assert_eq!(deferred_ephemeral(), json!({"type": 5, "data": {"flags": 64}}));
    }
}
