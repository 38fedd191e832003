//! Structural schemas of custom resources: what the apiserver does to a
//! custom resource on every write, in its order: prune unknown fields, apply
//! defaults, then validate against the `openAPIV3Schema` (422 Invalid with
//! one cause per field).
//!
//! Covered: `type` (with `nullable` and `x-kubernetes-int-or-string`),
//! `properties`, `additionalProperties`, `items`, `required`, `enum`,
//! `pattern`, `minLength`/`maxLength`, `minimum`/`maximum` (and their
//! exclusive forms), `minItems`/`maxItems`, `minProperties`/`maxProperties`,
//! `default` and `x-kubernetes-preserve-unknown-fields`. Not covered: CEL
//! rules, `format` checks, list types and ratcheting.

use serde_json::{Map, Value};

/// One invalid field, like the apiserver's `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldError {
    /// `spec.rules[0].match.roles[1]`, `spec.recipients[slack]`.
    pub field: String,
    /// `FieldValueRequired`, `FieldValueInvalid`, ...
    pub cause: &'static str,
    /// The message without the field, e.g. `Required value`.
    pub body: String,
}

impl FieldError {
    fn new(field: &str, cause: &'static str, body: String) -> Self {
        FieldError { field: field.into(), cause, body }
    }
}

/// Prunes, defaults and validates a whole object; `apiVersion`, `kind` and
/// `metadata` at the root are the server's and left alone.
pub(crate) fn admit(schema: &Value, obj: &mut Value) -> Result<(), Vec<FieldError>> {
    if let Some(root) = obj.as_object_mut() {
        let kept: Vec<(String, Value)> = ["apiVersion", "kind", "metadata"]
            .into_iter()
            .filter_map(|k| root.remove(k).map(|v| (k.to_string(), v)))
            .collect();
        let mut body = Value::Object(std::mem::take(root));
        prune(schema, &mut body);
        apply_defaults(schema, &mut body);
        let mut errors = Vec::new();
        validate(schema, &body, "", &mut errors);
        let Value::Object(mut body) = body else { unreachable!("pruning keeps an object an object") };
        for (k, v) in kept {
            body.insert(k, v);
        }
        *root = body;
        return if errors.is_empty() { Ok(()) } else { Err(errors) };
    }
    let mut errors = Vec::new();
    validate(schema, obj, "", &mut errors);
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

/// Drops object fields the schema does not declare, unless the schema keeps
/// unknown fields at that level.
pub(crate) fn prune(schema: &Value, value: &mut Value) {
    each_object(schema, value, &mut |schema, map| {
        if schema.get("additionalProperties").is_some_and(Value::is_object) || preserves_unknown(schema) {
            return;
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        map.retain(|k, _| properties.is_some_and(|p| p.contains_key(k)));
    });
}

/// Fills in `default`s of absent fields (and of nulls where null is not
/// allowed), then defaults inside them.
fn apply_defaults(schema: &Value, value: &mut Value) {
    each_object(schema, value, &mut |schema, map| {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
        for (k, s) in properties {
            let Some(default) = s.get("default") else { continue };
            let nullable = s.get("nullable") == Some(&Value::Bool(true));
            let absent = match map.get(k) {
                None => true,
                Some(Value::Null) => !nullable,
                Some(_) => false,
            };
            if absent {
                map.insert(k.clone(), default.clone());
            }
        }
    });
}

/// Calls `at` on every object in `value` with the schema that governs it:
/// first on the object itself, then on the objects below it, reached through
/// `additionalProperties` or `properties` (a structural schema has one or the
/// other) and array `items`.
fn each_object(schema: &Value, value: &mut Value, at: &mut impl FnMut(&Value, &mut Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            at(schema, map);
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for v in map.values_mut() {
                    each_object(additional, v, at);
                }
            } else if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in map.iter_mut() {
                    if let Some(s) = properties.get(k) {
                        each_object(s, v, at);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for v in items {
                    each_object(item_schema, v, at);
                }
            }
        }
        _ => {}
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Go's `%v`-like rendering of a value in a message: strings quoted, others as JSON.
fn shown(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(want: &str, v: &Value) -> bool {
    match want {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => true,
    }
}

pub(crate) fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let shown_path = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        let nullable = schema.get("nullable") == Some(&Value::Bool(true));
        if !nullable && schema.get("type").is_some() {
            let want = schema["type"].as_str().unwrap_or("");
            errors.push(FieldError::new(
                path,
                "FieldValueTypeInvalid",
                format!("Invalid value: \"null\": {shown_path} in body must be of type {want}: \"null\""),
            ));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if int_or_string {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(FieldError::new(
                path,
                "FieldValueTypeInvalid",
                format!(
                    "Invalid value: \"{}\": {shown_path} in body must be of type integer or string: \"{}\"",
                    type_name(value),
                    type_name(value)
                ),
            ));
            return;
        }
    } else if let Some(want) = schema.get("type").and_then(Value::as_str)
        && !type_ok(want, value)
    {
        let got = type_name(value);
        errors.push(FieldError::new(
            path,
            "FieldValueTypeInvalid",
            format!("Invalid value: \"{got}\": {shown_path} in body must be of type {want}: \"{got}\""),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(shown).collect();
        errors.push(FieldError::new(
            path,
            "FieldValueNotSupported",
            format!("Unsupported value: {}: supported values: {}", shown(value), list.join(", ")),
        ));
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    let flag = |k: &str| schema.get(k) == Some(&Value::Bool(true));
    let invalid = |errors: &mut Vec<FieldError>, why: String| {
        errors.push(FieldError::new(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {}: {shown_path} in body {why}", shown(value)),
        ));
    };
    match value {
        Value::String(s) => {
            let chars = s.chars().count() as f64;
            if let Some(max) = num("maxLength").filter(|m| chars > *m) {
                errors.push(FieldError::new(path, "FieldValueTooLong", format!("Too long: may not be more than {max} bytes")));
            }
            if let Some(min) = num("minLength").filter(|m| chars < *m) {
                invalid(errors, format!("should be at least {min} chars long"));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if re.is_match(s) => {}
                    Ok(_) => invalid(errors, format!("should match '{pattern}'")),
                    Err(_) => invalid(errors, format!("has an unusable pattern '{pattern}'")),
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = num("minimum") {
                if flag("exclusiveMinimum") && x <= min {
                    invalid(errors, format!("should be greater than {min}"));
                } else if x < min {
                    invalid(errors, format!("should be greater than or equal to {min}"));
                }
            }
            if let Some(max) = num("maximum") {
                if flag("exclusiveMaximum") && x >= max {
                    invalid(errors, format!("should be less than {max}"));
                } else if x > max {
                    invalid(errors, format!("should be less than or equal to {max}"));
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as f64;
            if let Some(max) = num("maxItems").filter(|m| n > *m) {
                errors.push(FieldError::new(path, "FieldValueTooMany", format!("Too many: {n}: must have at most {max} items")));
            }
            if let Some(min) = num("minItems").filter(|m| n < *m) {
                invalid(errors, format!("should have at least {min} items"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => validate_object(schema, map, path, errors),
        _ => {}
    }
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(k) = req.as_str()
            && !map.contains_key(k)
        {
            errors.push(FieldError::new(&child(path, k), "FieldValueRequired", "Required value".into()));
        }
    }
    let n = map.len() as f64;
    let shown_path = if path.is_empty() { "<root>" } else { path };
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_f64).filter(|m| n > *m) {
        errors.push(FieldError::new(path, "FieldValueTooMany", format!("Too many: {n}: must have at most {max} items")));
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_f64).filter(|m| n < *m) {
        errors.push(FieldError::new(
            path,
            "FieldValueInvalid",
            format!("Invalid value: {n}: {shown_path} in body should have at least {min} properties"),
        ));
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, v) in map {
        if let Some(s) = properties.and_then(|p| p.get(k)) {
            validate(s, v, &child(path, k), errors);
        } else if let Some(s) = additional {
            validate(s, v, &format!("{path}[{k}]"), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["mode"],
                    "properties": {
                        "mode": {"type": "string", "enum": ["fast", "slow"]},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8, "minLength": 2},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 5},
                        "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "port": {"x-kubernetes-int-or-string": true},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                 "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                        "nested": {"type": "array", "items": {"type": "object", "required": ["id"],
                                   "properties": {"id": {"type": "integer"}, "opts": {"type": "object", "default": {},
                                   "properties": {"on": {"type": "boolean", "default": true}}}}}},
                        "maybe": {"type": "string", "nullable": true}
                    }
                },
                "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
            }
        })
    }

    fn admitted(obj: Value) -> Result<Value, Vec<FieldError>> {
        let mut obj = obj;
        admit(&schema(), &mut obj).map(|()| obj)
    }

    fn fields(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn unknown_fields_are_pruned_where_not_preserved() {
        let out = admitted(json!({
            "apiVersion": "g/v1", "kind": "T", "metadata": {"name": "x", "anything": 1},
            "spec": {"mode": "fast", "bogus": 1, "labels": {"a": "b"},
                     "free": {"extra": {"deep": 1}, "known": {"a": "s", "drop": 2}},
                     "nested": [{"id": 1, "junk": true}]},
            "topLevelJunk": {}
        }))
        .unwrap();
        assert_eq!(out["metadata"], json!({"name": "x", "anything": 1}), "metadata is not the schema's");
        assert!(out.get("topLevelJunk").is_none());
        assert!(out["spec"].get("bogus").is_none());
        assert_eq!(out["spec"]["labels"], json!({"a": "b"}));
        assert_eq!(out["spec"]["free"]["extra"], json!({"deep": 1}), "preserved level keeps unknowns");
        assert_eq!(out["spec"]["free"]["known"], json!({"a": "s"}), "known children below are still pruned");
        assert_eq!(out["spec"]["nested"][0], json!({"id": 1, "opts": {"on": true}}), "pruned, then defaulted");
    }

    #[test]
    fn type_required_enum_pattern_and_bounds_are_checked() {
        let errs = admitted(json!({"spec": {
            "mode": "medium", "name": "Bad_Name!", "replicas": 9, "ratio": 0, "tags": ["a", "b", "c"],
            "labels": {"x": 1}, "port": true, "nested": [{"opts": {"on": "yes"}}], "maybe": null
        }}))
        .unwrap_err();
        let mut got = fields(&errs);
        got.sort();
        assert_eq!(got, vec![
            "spec.labels[x]", "spec.mode", "spec.name", "spec.name", "spec.nested[0].id", "spec.nested[0].opts.on",
            "spec.port", "spec.ratio", "spec.replicas", "spec.tags",
        ]);
        let by = |f: &str| errs.iter().filter(|e| e.field == f).map(|e| (e.cause, e.body.as_str())).collect::<Vec<_>>();
        assert_eq!(by("spec.mode"), vec![("FieldValueNotSupported", r#"Unsupported value: "medium": supported values: "fast", "slow""#)]);
        assert_eq!(by("spec.nested[0].id"), vec![("FieldValueRequired", "Required value")]);
        assert_eq!(
            by("spec.nested[0].opts.on"),
            vec![("FieldValueTypeInvalid", r#"Invalid value: "string": spec.nested[0].opts.on in body must be of type boolean: "string""#)]
        );
        assert!(by("spec.name").iter().any(|(_, b)| b.contains("should match '^[a-z]+$'")));
        assert!(by("spec.name").iter().any(|(c, _)| *c == "FieldValueTooLong"));
        assert!(by("spec.replicas")[0].1.contains("less than or equal to 5"));
        assert!(by("spec.ratio")[0].1.contains("greater than 0"));
        assert_eq!(by("spec.tags")[0].0, "FieldValueTooMany");
    }

    #[test]
    fn missing_and_null_fields() {
        let errs = admitted(json!({"metadata": {"name": "x"}})).unwrap_err();
        assert_eq!(fields(&errs), vec!["spec"]);
        let errs = admitted(json!({"spec": {"mode": null}})).unwrap_err();
        assert_eq!(errs[0].body, r#"Invalid value: "null": spec.mode in body must be of type string: "null""#);
        assert!(admitted(json!({"spec": {"mode": "slow", "maybe": null, "port": "http", "ratio": 0.5}})).is_ok());
        assert!(admitted(json!({"spec": {"mode": "slow", "port": 8080, "replicas": 1, "name": "ok"}})).is_ok());
    }
}
