//! The plugin data of Teleport's official access request plugins, as their Go
//! code reads and writes it, so a test can act as the official plugin on the
//! records another plugin left.
//!
//! The official plugins decode the stored map into a Go struct
//! (`AccessRequestData` plus the posted messages), change it, and write
//! `set = encode(new)` with `expect = encode(decoded)`: the *re-encoding* of
//! what they read, not the stored bytes. A stored value that does not survive
//! decode → encode byte for byte therefore fails every write of theirs (they
//! retry with the same expectation until their deadline).
//!
//! Go types are mirrored with `Option` for nil: `Option<Vec<String>>` is a
//! `[]string` that may be nil (`null`), distinct from empty (`[]`).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

pub type StringList = Option<Vec<String>>;
pub type StringListMap = Option<BTreeMap<String, StringList>>;

/// The decoded record of an official plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfficialData {
    pub user: String,
    pub roles: StringList,
    pub request_reason: String,
    pub reviews_count: i64,
    pub resolution: String,
    pub resolve_reason: String,
    pub system_annotations: StringListMap,
    pub resources: StringList,
    pub suggested_reviewers: StringList,
    pub logins_by_role: StringListMap,
    /// RFC 3339 as Go's `time.Format(time.RFC3339)` writes it.
    pub max_duration: Option<String>,
    /// (channel id, message id) of each posted message.
    pub messages: Vec<(String, String)>,
}

// ---- Go's encoding/json, compact with HTML escaping ------------------------

fn go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn go_list(out: &mut String, l: &StringList) {
    let Some(items) = l else {
        out.push_str("null");
        return;
    };
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        go_string(out, s);
    }
    out.push(']');
}

fn go_map(m: &BTreeMap<String, StringList>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        go_string(&mut out, k);
        out.push(':');
        go_list(&mut out, v);
    }
    out.push('}');
    out
}

fn list_json(l: &StringList) -> String {
    let mut out = String::new();
    go_list(&mut out, l);
    out
}

// ---- Go's json.Unmarshal into []string and map[string][]string --------------

fn to_list(v: &Value) -> Result<StringList, String> {
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Null => Ok(String::new()),
                other => Err(format!("json: cannot unmarshal {other} into Go value of type string")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(format!("json: cannot unmarshal {other} into Go value of type []string")),
    }
}

fn unmarshal_list(s: &str) -> Result<StringList, String> {
    to_list(&serde_json::from_str::<Value>(s).map_err(|e| e.to_string())?)
}

fn unmarshal_map(s: &str) -> Result<StringListMap, String> {
    match serde_json::from_str::<Value>(s).map_err(|e| e.to_string())? {
        Value::Null => Ok(None),
        Value::Object(m) => m.iter().map(|(k, v)| Ok((k.clone(), to_list(v)?))).collect::<Result<_, String>>().map(Some),
        other => Err(format!("json: cannot unmarshal {other} into Go value of type map[string][]string")),
    }
}

/// `fmt.Sscanf(s, "%d", &n)`: leading spaces, a sign, digits; 0 otherwise.
fn sscanf_int(s: &str) -> i64 {
    let t = s.trim_start();
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<i64>().map(|n| sign * n).unwrap_or(0)
}

/// `time.Parse(time.RFC3339, s)` then `Format(time.RFC3339)`: fractional
/// seconds dropped, the parsed offset kept (`Z` for UTC).
fn rfc3339_round_trip(s: &str) -> Result<String, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("parsing time {s:?}: {e}"))?;
    let off = t.offset();
    let zone = if off.is_utc() {
        "Z".to_string()
    } else {
        let (h, m, _) = off.as_hms();
        format!("{}{:02}:{:02}", if off.is_negative() { '-' } else { '+' }, h.unsigned_abs(), m.unsigned_abs())
    };
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

/// Decodes a stored map as the official plugins do; errors where Go errors.
pub fn decode(m: &HashMap<String, String>) -> Result<OfficialData, String> {
    let get = |k: &str| m.get(k).cloned().unwrap_or_default();
    let mut d = OfficialData {
        user: get("user"),
        request_reason: get("request_reason"),
        resolution: get("resolution"),
        resolve_reason: get("resolve_reason"),
        ..Default::default()
    };
    let roles = get("roles");
    if !roles.is_empty() {
        d.roles = Some(roles.split(',').map(String::from).collect());
    }
    let count = get("reviews_count");
    if !count.is_empty() {
        d.reviews_count = sscanf_int(&count);
    }
    let max = get("max_duration");
    if !max.is_empty() {
        d.max_duration = Some(rfc3339_round_trip(&max)?);
    }
    // `resources` is read whenever the key is there, and not normalised.
    if let Some(r) = m.get("resources") {
        d.resources = unmarshal_list(r).map_err(|e| format!("resources: {e}"))?;
    }
    let empty_map_is_nil = |v: StringListMap| v.filter(|m| !m.is_empty());
    let empty_list_is_nil = |v: StringList| v.filter(|l| !l.is_empty());
    if let Some(v) = m.get("system_annotations") {
        d.system_annotations = empty_map_is_nil(unmarshal_map(v).map_err(|e| format!("system_annotations: {e}"))?);
    }
    if let Some(v) = m.get("suggested_reviewers") {
        d.suggested_reviewers = empty_list_is_nil(unmarshal_list(v).map_err(|e| format!("suggested_reviewers: {e}"))?);
    }
    if let Some(v) = m.get("logins_by_role") {
        d.logins_by_role = empty_map_is_nil(unmarshal_map(v).map_err(|e| format!("logins_by_role: {e}"))?);
    }
    // Legacy single message first, then `messages` pairs of exactly two parts.
    let (channel, ts) = (get("channel_id"), get("timestamp"));
    if !channel.is_empty() && !ts.is_empty() {
        d.messages.push((channel, ts));
    }
    let messages = get("messages");
    if !messages.is_empty() {
        for pair in messages.split(',') {
            if let [c, id] = pair.split('/').collect::<Vec<_>>()[..] {
                d.messages.push((c.into(), id.into()));
            }
        }
    }
    Ok(d)
}

/// Encodes as the official plugins do: the eight base keys always (`""`
/// deletes on write), the optional ones only when set.
pub fn encode(d: &OfficialData) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("user".into(), d.user.clone());
    m.insert("roles".into(), d.roles.clone().unwrap_or_default().join(","));
    let resources = match &d.resources {
        Some(r) if !r.is_empty() => list_json(&d.resources),
        _ => String::new(),
    };
    m.insert("resources".into(), resources);
    m.insert("request_reason".into(), d.request_reason.clone());
    m.insert("reviews_count".into(), if d.reviews_count > 0 { d.reviews_count.to_string() } else { String::new() });
    m.insert("resolution".into(), d.resolution.clone());
    m.insert("resolve_reason".into(), d.resolve_reason.clone());
    if let Some(t) = &d.max_duration {
        m.insert("max_duration".into(), t.clone());
    }
    if let Some(a) = d.system_annotations.as_ref().filter(|a| !a.is_empty()) {
        m.insert("system_annotations".into(), go_map(a));
    }
    if d.suggested_reviewers.as_ref().is_some_and(|s| !s.is_empty()) {
        m.insert("suggested_reviewers".into(), list_json(&d.suggested_reviewers));
    }
    if let Some(l) = d.logins_by_role.as_ref().filter(|l| !l.is_empty()) {
        m.insert("logins_by_role".into(), go_map(l));
    }
    m.insert("messages".into(), d.messages.iter().map(|(c, id)| format!("{c}/{id}")).collect::<Vec<_>>().join(","));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn go_re_encoding_is_what_the_official_plugin_expects() {
        let stored = map(&[
            ("user", "alice"),
            ("roles", "dev,editor"),
            ("resources", r#"["/c/node/a&b"]"#),
            ("system_annotations", r#"{"url":["x?a=1&b=<2>"],"empty":[]}"#),
            ("logins_by_role", r#"{"editor":null,"dev":["root"]}"#),
            ("reviews_count", "03"),
            ("messages", "C1/1.2,bad,C2/3/4"),
            ("max_duration", "2030-01-02T03:04:05.999+02:00"),
        ]);
        let e = encode(&decode(&stored).unwrap());
        assert_eq!(e["resources"], r#"["/c/node/a\u0026b"]"#);
        assert_eq!(e["system_annotations"], r#"{"empty":[],"url":["x?a=1\u0026b=\u003c2\u003e"]}"#);
        assert_eq!(e["logins_by_role"], r#"{"dev":["root"],"editor":null}"#);
        assert_eq!(e["reviews_count"], "3");
        assert_eq!(e["messages"], "C1/1.2");
        assert_eq!(e["max_duration"], "2030-01-02T03:04:05+02:00");
        assert_eq!(e["resolution"], "");
    }

    #[test]
    fn empty_forms_are_nil_after_decoding() {
        let d = decode(&map(&[("system_annotations", "{}"), ("logins_by_role", "null"), ("resources", "[]")])).unwrap();
        assert_eq!(d.system_annotations, None);
        assert_eq!(d.logins_by_role, None);
        assert_eq!(d.resources, Some(vec![]));
        let e = encode(&d);
        assert!(!e.contains_key("system_annotations") && !e.contains_key("logins_by_role"));
        assert_eq!(e["resources"], "");
    }

    #[test]
    fn what_go_cannot_decode_is_an_error() {
        assert!(decode(&map(&[("resources", "")])).is_err());
        assert!(decode(&map(&[("logins_by_role", r#"{"a":"b"}"#)])).is_err());
        assert!(decode(&map(&[("max_duration", "tomorrow")])).is_err());
        assert_eq!(decode(&map(&[("reviews_count", " 2x")])).unwrap().reviews_count, 2);
    }
}
