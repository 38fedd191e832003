//! Helpers over objects stored as JSON values.

use base64::Engine;
use serde_json::{Map, Value};

use super::resource::ResourceType;
use super::status::ApiError;

/// The string at a nested object path, if every step exists.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str()
}

pub(crate) fn labels(v: &Value) -> Option<&Map<String, Value>> {
    v.get("metadata")?.get("labels")?.as_object()
}

pub(crate) fn name(v: &Value) -> &str {
    str_at(v, &["metadata", "name"]).unwrap_or("")
}

pub(crate) fn namespace(v: &Value) -> &str {
    str_at(v, &["metadata", "namespace"]).unwrap_or("")
}

pub(crate) fn resource_version(v: &Value) -> &str {
    str_at(v, &["metadata", "resourceVersion"]).unwrap_or("")
}

pub(crate) fn uid(v: &Value) -> &str {
    str_at(v, &["metadata", "uid"]).unwrap_or("")
}

pub(crate) fn finalizers_empty(v: &Value) -> bool {
    v.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_none_or(|f| f.is_empty())
}

pub(crate) fn is_deleting(v: &Value) -> bool {
    v.get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|t| !t.is_null())
}

pub(crate) fn generation(v: &Value) -> i64 {
    v.get("metadata")
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Mutable `metadata`, created if absent. Callers validated that `v` is an object.
pub(crate) fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let obj = v.as_object_mut().expect("just made an object");
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("just made an object")
}

/// Sets (or, with `None`, removes) a metadata field.
pub(crate) fn set_meta(v: &mut Value, key: &str, value: Option<Value>) {
    let meta = meta_mut(v);
    match value {
        Some(value) => {
            meta.insert(key.to_string(), value);
        }
        None => {
            meta.remove(key);
        }
    }
}

/// Copies a metadata field from `from` (removing it when `from` lacks it).
pub(crate) fn copy_meta(to: &mut Value, from: &Value, key: &str) {
    let value = from.get("metadata").and_then(|m| m.get(key)).cloned();
    set_meta(to, key, value);
}

/// Replaces (or removes) the top-level `status`.
pub(crate) fn set_status(to: &mut Value, status: Option<Value>) {
    if let Some(obj) = to.as_object_mut() {
        match status {
            Some(s) => {
                obj.insert("status".into(), s);
            }
            None => {
                obj.remove("status");
            }
        }
    }
}

/// `creationTimestamp`-style RFC 3339 time with second precision.
pub(crate) fn now_timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// What the apiserver's decoder would reject outright.
pub(crate) fn validate_shape(rt: &ResourceType, v: &Value) -> Result<(), ApiError> {
    let name = name(v).to_string();
    let invalid = |why: &str| ApiError::invalid(rt, &name, why);
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    let Some(meta) = obj.get("metadata") else {
        return Ok(());
    };
    let meta = meta
        .as_object()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    for field in ["labels", "annotations"] {
        if let Some(map) = meta.get(field).filter(|m| !m.is_null()) {
            let ok = map
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
            if !ok {
                return Err(invalid(&format!(
                    "metadata.{field}: must be a map of strings"
                )));
            }
        }
    }
    if let Some(fin) = meta.get("finalizers").filter(|f| !f.is_null()) {
        let ok = fin
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return Err(invalid("metadata.finalizers: must be a list of strings"));
        }
    }
    for field in ["name", "namespace", "generateName", "resourceVersion"] {
        if meta
            .get(field)
            .is_some_and(|f| !f.is_null() && !f.is_string())
        {
            return Err(ApiError::bad_request(format!(
                "metadata.{field} must be a string"
            )));
        }
    }
    Ok(())
}

/// Object names must be DNS subdomains.
pub(crate) fn validate_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            rt,
            name,
            &format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        ))
    }
}

/// The object without the fields that do not count towards `metadata.generation`.
pub(crate) fn generation_relevant(rt: &ResourceType, v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("metadata");
        if rt.status_subresource {
            obj.remove("status");
        }
    }
    v
}

/// Secrets: folds write-only `stringData` into base64 `data` and defaults `type`.
pub(crate) fn normalize_builtin(rt: &ResourceType, v: &mut Value) -> Result<(), ApiError> {
    if !(rt.builtin && rt.kind == "Secret") {
        return Ok(());
    }
    let Some(obj) = v.as_object_mut() else {
        return Ok(());
    };
    if let Some(string_data) = obj.remove("stringData").filter(|s| !s.is_null()) {
        let Value::Object(string_data) = string_data else {
            return Err(ApiError::bad_request("stringData must be a map of strings"));
        };
        let data = obj
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if !data.is_object() {
            *data = Value::Object(Map::new());
        }
        let data = data.as_object_mut().expect("just made an object");
        for (key, value) in string_data {
            let Value::String(value) = value else {
                return Err(ApiError::bad_request("stringData must be a map of strings"));
            };
            let encoded = base64::engine::general_purpose::STANDARD.encode(value);
            data.insert(key, Value::String(encoded));
        }
    }
    obj.entry("type")
        .or_insert_with(|| Value::String("Opaque".into()));
    Ok(())
}
