//! API errors, rendered as `meta.k8s.io/v1` `Status` objects like the real apiserver.

use serde_json::{Value, json};

use super::resource::ResourceType;

/// A failed request: HTTP code, machine-readable reason and message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.into(),
            message: message.into(),
            details: None,
        }
    }

    fn with_target(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": rt.group, "kind": rt.plural}));
        self
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", rt.qualified());
        Self::new(404, "NotFound", message).with_target(rt, name)
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", rt.qualified());
        Self::new(409, "AlreadyExists", message).with_target(rt, name)
    }

    /// Optimistic-concurrency failure (stale `resourceVersion`, failed precondition).
    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            rt.qualified()
        );
        Self::new(409, "Conflict", message).with_target(rt, name)
    }

    pub fn invalid(rt: &ResourceType, name: &str, why: &str) -> Self {
        let message = format!("{} \"{name}\" is invalid: {why}", rt.kind);
        Self::new(422, "Invalid", message).with_target(rt, name)
    }

    /// A custom resource failing its schema: one cause per field, the message
    /// listing them as the apiserver aggregates them.
    pub fn invalid_fields(rt: &ResourceType, name: &str, errors: &[super::schema::FieldError]) -> Self {
        let listed: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.body)).collect();
        let why = match listed.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let message = format!("{} {name:?} is invalid: {why}", rt.qualified_kind());
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.cause, "message": e.body, "field": e.field}))
            .collect();
        let mut err = Self::new(422, "Invalid", message);
        err.details = Some(json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}));
        err
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// The requested history is gone; clients must re-list.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn route_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource: {method}"),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {content_type:?}"
            ),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object sent on the wire.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    /// Converts to kube's typed `Status`, for the in-process control API.
    pub fn into_kube(self) -> Box<::kube::core::Status> {
        let status = serde_json::from_value(self.to_status()).unwrap_or_else(|_| {
            ::kube::core::Status::failure(&self.message, &self.reason).with_code(self.code)
        });
        Box::new(status)
    }

    /// Builds an error from a `Status` a test injected with `fail_next`.
    pub fn from_kube(status: &::kube::core::Status) -> Self {
        ApiError {
            code: if status.code == 0 { 500 } else { status.code },
            reason: status.reason.clone(),
            message: status.message.clone(),
            details: status
                .details
                .as_ref()
                .and_then(|d| serde_json::to_value(d).ok()),
        }
    }
}

/// The `Status` a successful DELETE of a built-in resource answers with.
pub(crate) fn delete_success(rt: &ResourceType, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": uid},
    })
}
