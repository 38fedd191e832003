//! JSON exactly as Go's `encoding/json` `Marshal` writes it, for the plugin
//! data values the official plugins also read.
//!
//! The official plugins use the re-encoding of what they decoded as the
//! `expect` of their next compare-and-swap, so a value we store must be the
//! very bytes Go would write for it, or every later write of theirs fails.
//! Go's rules (Go 1.22 and later, which current Teleport releases use):
//! - compact: no whitespace;
//! - strings: `"` and `\` escaped; `\b \f \n \r \t` in short form; other
//!   bytes below 0x20 as `\u00xx` with lowercase hex; `<`, `>`, `&` as
//!   `\u003c \u003e \u0026` (HTML-safe, always on in `Marshal`); U+2028 and
//!   U+2029 as `\u2028 \u2029`; every byte of invalid UTF-8 as `\ufffd`;
//!   everything else, DEL and non-ASCII included, as is;
//! - maps: keys sorted bytewise; a nil slice is `null`.
//!
//! Reading takes both our output and other writers' (`\u0026` or a raw `&`,
//! any spacing or key order) and, like Go's decoder for the same Go types
//! (`[]string`, `map[string][]string`), `null` for the whole value, for a
//! map value (a role without logins) and for a list item (an empty string).

use std::collections::BTreeMap;

use serde_json::Value;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as a Go JSON string; invalid UTF-8 becomes `\ufffd`.
pub fn push_bytes(out: &mut String, mut bytes: &[u8]) {
    out.push('"');
    loop {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                push_chars(out, valid);
                break;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                push_chars(out, std::str::from_utf8(valid).expect("checked prefix"));
                // Go replaces each byte it cannot decode, one at a time; an
                // incomplete sequence at the end counts byte by byte too.
                let bad = e.error_len().unwrap_or(1).min(rest.len());
                for _ in 0..bad {
                    out.push_str("\\ufffd");
                }
                bytes = &rest[bad..];
            }
        }
    }
    out.push('"');
}

/// Appends `s` as a Go JSON string.
pub fn push_str(out: &mut String, s: &str) {
    push_bytes(out, s.as_bytes());
}

fn push_chars(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
}

/// A Go JSON string.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str(&mut out, s);
    out
}

/// A `[]string` (non-nil): `["a","b"]`, `[]` when empty.
pub fn string_list(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, s);
    }
    out.push(']');
    out
}

/// A `map[string][]string` with keys sorted; an empty list is written `null`,
/// as the official plugins write a role without logins (Go's nil slice).
pub fn string_list_map(map: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, k);
        out.push(':');
        if v.is_empty() {
            out.push_str("null");
        } else {
            out.push_str(&string_list(v));
        }
    }
    out.push('}');
    out
}

/// Why a stored value is not what Go's decoder accepts for the type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

fn list_of(v: &Value) -> Result<Vec<String>, DecodeError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                // Go leaves the zero value for a null item.
                Value::Null => Ok(String::new()),
                other => Err(DecodeError(format!("cannot unmarshal {} into a string", kind(other)))),
            })
            .collect(),
        other => Err(DecodeError(format!("cannot unmarshal {} into a list of strings", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse(s: &str) -> Result<Value, DecodeError> {
    serde_json::from_str(s).map_err(|e| DecodeError(e.to_string()))
}

/// Reads a `[]string`; `null` is the empty list.
pub fn parse_string_list(s: &str) -> Result<Vec<String>, DecodeError> {
    list_of(&parse(s)?)
}

/// Reads a `map[string][]string`; `null` (whole map or one value) is empty.
pub fn parse_string_list_map(s: &str) -> Result<BTreeMap<String, Vec<String>>, DecodeError> {
    match parse(s)? {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => m.iter().map(|(k, v)| Ok((k.clone(), list_of(v)?))).collect(),
        other => Err(DecodeError(format!("cannot unmarshal {} into a map of string lists", kind(&other)))),
    }
}

#[cfg(test)]
mod tests {
    //! Expected bytes are derived by hand from Go's `encoding/json` rules
    //! (`appendString` with HTML escaping, sorted map keys), e.g.
    //! `json.Marshal([]string{"a&b"})` is `["a\u0026b"]`.
    use super::*;

    fn list(items: &[&str]) -> String {
        string_list(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn html_characters_and_line_separators_are_escaped() {
        assert_eq!(string("https://x.example/?a=1&b=<2>"), r#""https://x.example/?a=1\u0026b=\u003c2\u003e""#);
        assert_eq!(string("line\u{2028}para\u{2029}end"), r#""line\u2028para\u2029end""#);
    }

    #[test]
    fn control_characters_use_go_short_forms_and_lowercase_hex() {
        assert_eq!(string("\u{8}\u{c}\n\r\t"), r#""\b\f\n\r\t""#);
        assert_eq!(string("\u{0}\u{1}\u{b}\u{1b}\u{1f}"), r#""\u0000\u0001\u000b\u001b\u001f""#);
        assert_eq!(string("\"\\"), r#""\"\\""#);
    }

    #[test]
    fn other_characters_are_written_as_is() {
        // DEL, '/', '\'', non-ASCII and astral characters are not escaped.
        assert_eq!(string("\u{7f}/'é漢🙂"), "\"\u{7f}/'é漢🙂\"");
    }

    #[test]
    fn invalid_utf8_becomes_one_replacement_escape_per_byte() {
        let mut out = String::new();
        push_bytes(&mut out, b"a\xffb\xc3");
        assert_eq!(out, r#""a\ufffdb\ufffd""#);
        let mut out = String::new();
        // A surrogate encoded in UTF-8 (ED A0 80) is three invalid bytes for Go.
        push_bytes(&mut out, b"\xed\xa0\x80!");
        assert_eq!(out, r#""\ufffd\ufffd\ufffd!""#);
    }

    #[test]
    fn lists_and_maps_are_compact_with_sorted_keys() {
        assert_eq!(list(&["root", "{{internal.logins}}"]), r#"["root","{{internal.logins}}"]"#);
        assert_eq!(list(&[]), "[]");
        let mut m = BTreeMap::new();
        m.insert("editor".to_string(), vec![]);
        m.insert("dev".to_string(), vec!["root".to_string()]);
        m.insert("Z&".to_string(), vec!["<a>".to_string()]);
        assert_eq!(string_list_map(&m), r#"{"Z\u0026":["\u003ca\u003e"],"dev":["root"],"editor":null}"#);
        assert_eq!(string_list_map(&BTreeMap::new()), "{}");
    }

    #[test]
    fn reads_what_go_reads() {
        assert_eq!(parse_string_list(r#"["a\u0026b","c&d"]"#).unwrap(), vec!["a&b", "c&d"]);
        assert_eq!(parse_string_list("null").unwrap(), Vec::<String>::new());
        assert_eq!(parse_string_list(r#"["a",null]"#).unwrap(), vec!["a", ""]);
        let m = parse_string_list_map(r#"{"dev":["root"],"editor":null}"#).unwrap();
        assert_eq!(m["dev"], vec!["root"]);
        assert!(m["editor"].is_empty());
        assert!(parse_string_list_map("null").unwrap().is_empty());
        assert!(parse_string_list(r#"[1]"#).is_err());
        assert!(parse_string_list_map(r#"{"a":"b"}"#).is_err());
        assert!(parse_string_list("not json").is_err());
    }

    #[test]
    fn writing_what_was_read_gives_back_go_bytes() {
        let go = r#"{"dev":["root","{{internal.logins}}"],"editor":null,"ops\u2028":["a\u0026b"]}"#;
        assert_eq!(string_list_map(&parse_string_list_map(go).unwrap()), go);
    }
}
