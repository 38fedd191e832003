//! HTTP routing: maps apiserver REST paths and verbs onto the store.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::object::{name as obj_name, uid};
use super::rbac::{Attributes, selector_name};
use super::resource::ResourceType;
use super::selector::{FieldSelector, LabelSelector, Selectors};
use super::state::{RequestRecord, Shared};
use super::status::{ApiError, delete_success};
use super::store::{DeleteOutcome, ListRequest, PatchKind, Preconditions, UpdateMode};
use super::watch::{self, WatchRequest};

/// Watches without `timeoutSeconds` last this long (the apiserver picks 30-60 minutes).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// Upper bound on `timeoutSeconds`, so a huge value cannot overflow the deadline.
const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// A parsed resource path.
struct Route {
    group: String,
    version: String,
    plural: String,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return None;
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(*ns), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    Some(Route {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        ns: ns.map(Into::into),
        name: name.map(Into::into),
        sub: sub.map(Into::into),
    })
}

/// Request context shared by the verb handlers.
struct Ctx {
    shared: Arc<Shared>,
    rt: Arc<ResourceType>,
    ns: String,
    name: String,
    status: bool,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

impl Ctx {
    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad_request(format!(
                "the request body could not be decoded as JSON: {e}"
            ))
        })
    }

    fn selectors(&self) -> Result<Selectors, ApiError> {
        Ok(Selectors {
            labels: LabelSelector::parse(self.param("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(self.param("fieldSelector").unwrap_or(""), &self.rt)?,
        })
    }

    fn list_ns(&self) -> Option<&str> {
        (self.rt.namespaced && !self.ns.is_empty()).then_some(self.ns.as_str())
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let Some(route) = parse_route(uri.path()) else {
        return error_response(&ApiError::route_not_found());
    };
    let Some(rt) = shared.read(|s| {
        s.registry
            .by_path(&route.group, &route.version, &route.plural)
    }) else {
        return error_response(&ApiError::route_not_found());
    };
    let collection_read = route.name.is_none() && method == Method::GET;
    let scope_ok = if rt.namespaced {
        route.ns.is_some() || collection_read
    } else {
        route.ns.is_none()
    };
    let sub_ok = match route.sub.as_deref() {
        None => true,
        Some(sub) => sub == "status" && rt.status_subresource,
    };
    if !scope_ok || !sub_ok {
        return error_response(&ApiError::route_not_found());
    }
    let watching = matches!(
        params
            .iter()
            .find(|(k, _)| k == "watch")
            .map(|(_, v)| v.as_str()),
        Some("true" | "1")
    );
    let verb = match (&method, route.name.is_some()) {
        (&Method::GET, _) if watching => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return error_response(&ApiError::method_not_allowed(method.as_str())),
    };
    let status = route.sub.is_some();
    let access = authorize(&shared, &headers, &params, verb, &rt, &route);
    let record = RequestRecord {
        verb: verb.into(),
        resource: if status {
            format!("{}/status", rt.plural)
        } else {
            rt.plural.clone()
        },
        group: rt.group.clone(),
        namespace: route.ns.clone(),
        name: route.name.clone(),
        query: uri.query().unwrap_or("").into(),
        params: params.clone(),
        user: access.user.clone(),
        denied: access.refused.is_some(),
    };
    tracing::debug!(verb, resource = %record.resource, ns = ?record.namespace, name = ?record.name, user = ?record.user, "kube sim request");
    if let Some(refused) = access.refused {
        shared.record_denied(record);
        return error_response(&refused);
    }
    if let Some(injected) = shared.record(record) {
        return error_response(&injected);
    }
    let ctx = Ctx {
        shared,
        rt,
        ns: route.ns.unwrap_or_default(),
        name: route.name.unwrap_or_default(),
        status,
        params,
        headers,
        body,
    };
    let result = match verb {
        "watch" => watch(&ctx),
        "get" => get(&ctx),
        "list" => list(&ctx),
        "create" => create(&ctx),
        "update" => update(&ctx),
        "patch" => patch(&ctx),
        "delete" => delete(&ctx),
        _ => delete_collection(&ctx),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

/// Who sent a request and, if it is refused, the answer.
struct Access {
    user: Option<String>,
    refused: Option<ApiError>,
}

/// Authenticates the bearer token and authorizes the request by RBAC (both
/// no-ops until RBAC objects are loaded).
fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    params: &[(String, String)],
    verb: &str,
    rt: &ResourceType,
    route: &Route,
) -> Access {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    shared.with_policy(|policy| {
        let user = match policy.authenticate(authorization) {
            Ok(Some(user)) => user,
            Ok(None) => return Access { user: None, refused: None },
            Err(e) => return Access { user: None, refused: Some(e) },
        };
        let pinned = || {
            params
                .iter()
                .find(|(k, _)| k == "fieldSelector")
                .and_then(|(_, v)| selector_name(v))
        };
        let name = match (&route.name, verb) {
            (Some(n), _) => n.as_str(),
            (None, "list" | "watch") => pinned().unwrap_or(""),
            (None, _) => "",
        };
        let attrs = Attributes {
            verb,
            group: &rt.group,
            resource: &rt.plural,
            subresource: route.sub.as_deref(),
            namespace: route.ns.as_deref().unwrap_or(""),
            name,
        };
        let refused = policy.authorize(&user, &attrs).err();
        Access {
            user: Some(user.name),
            refused,
        }
    })
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error_response(err: &ApiError) -> Response {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &err.to_status())
}

fn get(ctx: &Ctx) -> Result<Response, ApiError> {
    let obj = ctx.shared.read(|s| s.get(&ctx.rt, &ctx.ns, &ctx.name))?;
    Ok(json_response(StatusCode::OK, &obj))
}

fn list(ctx: &Ctx) -> Result<Response, ApiError> {
    let limit = match ctx.param("limit") {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?,
        ),
    };
    let req = ListRequest {
        selectors: ctx.selectors()?,
        limit,
        continue_token: ctx
            .param("continue")
            .filter(|c| !c.is_empty())
            .map(Into::into),
        resource_version: ctx.param("resourceVersion").map(Into::into),
        version_match: ctx
            .param("resourceVersionMatch")
            .filter(|m| !m.is_empty())
            .map(Into::into),
    };
    let list = ctx.shared.read(|s| s.list(&ctx.rt, ctx.list_ns(), &req))?;
    Ok(json_response(StatusCode::OK, &list))
}

fn watch(ctx: &Ctx) -> Result<Response, ApiError> {
    let mut selectors = ctx.selectors()?;
    if !ctx.name.is_empty() {
        // Watching a single object is a watch with a name field selector.
        let by_name = format!("metadata.name={}", ctx.name);
        let mut fields = FieldSelector::parse(&by_name, &ctx.rt)?;
        fields.extend(selectors.fields);
        selectors.fields = fields;
    }
    let timeout = match ctx.param("timeoutSeconds") {
        None | Some("") | Some("0") => DEFAULT_WATCH_TIMEOUT,
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}")))?,
        )
        .min(MAX_WATCH_TIMEOUT),
    };
    let flag = |key: &str| match ctx.param(key) {
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        _ => None,
    };
    let req = WatchRequest {
        rt: ctx.rt.clone(),
        ns: ctx.list_ns().map(Into::into),
        selectors,
        resource_version: ctx.param("resourceVersion").map(Into::into),
        bookmarks: flag("allowWatchBookmarks") == Some(true),
        send_initial_events: flag("sendInitialEvents"),
        version_match: ctx
            .param("resourceVersionMatch")
            .filter(|m| !m.is_empty())
            .map(Into::into),
        timeout,
    };
    let body: Body = watch::start(ctx.shared.clone(), req)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

fn create(ctx: &Ctx) -> Result<Response, ApiError> {
    let obj = ctx.json_body()?;
    let created = ctx
        .shared
        .write(|s| s.create(&ctx.rt, &ctx.ns, obj, UpdateMode::Main, ctx.dry_run()))?;
    Ok(json_response(StatusCode::CREATED, &created))
}

fn update(ctx: &Ctx) -> Result<Response, ApiError> {
    let obj = ctx.json_body()?;
    let mode = if ctx.status {
        UpdateMode::Status
    } else {
        UpdateMode::Main
    };
    let updated = ctx
        .shared
        .write(|s| s.update(&ctx.rt, &ctx.ns, &ctx.name, obj, mode, ctx.dry_run()))?;
    Ok(json_response(StatusCode::OK, &updated))
}

fn patch(ctx: &Ctx) -> Result<Response, ApiError> {
    let content_type = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let patch = match media_type {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            PatchKind::Merge(ctx.json_body()?)
        }
        "application/json-patch+json" => {
            let ops = serde_json::from_slice(&ctx.body).map_err(|e| {
                ApiError::bad_request(format!("the request body is not a valid JSON patch: {e}"))
            })?;
            PatchKind::Json(ops)
        }
        "application/apply-patch+yaml" => {
            if ctx.param("fieldManager").is_none_or(str::is_empty) {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            // JSON is YAML; try the strict parser first for clearer errors.
            let obj = serde_json::from_slice(&ctx.body)
                .or_else(|_| serde_yaml::from_slice::<Value>(&ctx.body))
                .map_err(|e| {
                    ApiError::bad_request(format!("the apply body could not be decoded: {e}"))
                })?;
            PatchKind::Apply(obj)
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    let (obj, created) = ctx.shared.write(|s| {
        s.patch(
            &ctx.rt,
            &ctx.ns,
            &ctx.name,
            patch,
            ctx.status,
            ctx.dry_run(),
        )
    })?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(code, &obj))
}

/// Reads `DeleteOptions` from the body (kube always sends one; it may be empty).
fn delete_options(ctx: &Ctx) -> Result<(Preconditions, bool), ApiError> {
    if ctx.body.iter().all(u8::is_ascii_whitespace) {
        return Ok((Preconditions::default(), ctx.dry_run()));
    }
    let opts = ctx.json_body()?;
    let pre = opts.get("preconditions");
    let field = |k: &str| {
        pre.and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let dry_run = ctx.dry_run()
        || opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    Ok((
        Preconditions {
            uid: field("uid"),
            resource_version: field("resourceVersion"),
        },
        dry_run,
    ))
}

fn delete(ctx: &Ctx) -> Result<Response, ApiError> {
    let (pre, dry_run) = delete_options(ctx)?;
    let outcome = ctx
        .shared
        .write(|s| s.delete(&ctx.rt, &ctx.ns, &ctx.name, &pre, dry_run))?;
    Ok(match outcome {
        DeleteOutcome::Deleted(obj) if !ctx.rt.returns_deleted_object() => json_response(
            StatusCode::OK,
            &delete_success(&ctx.rt, obj_name(&obj), uid(&obj)),
        ),
        DeleteOutcome::Deleted(obj) => json_response(StatusCode::OK, &obj),
        DeleteOutcome::Pending(obj) => json_response(StatusCode::ACCEPTED, &obj),
    })
}

fn delete_collection(ctx: &Ctx) -> Result<Response, ApiError> {
    let (pre, dry_run) = delete_options(ctx)?;
    let req = ListRequest {
        selectors: ctx.selectors()?,
        ..ListRequest::default()
    };
    let deleted = ctx.shared.write(|s| -> Result<Vec<Value>, ApiError> {
        let list = s.list(&ctx.rt, ctx.list_ns(), &req)?;
        let mut deleted = Vec::new();
        for item in list["items"].as_array().into_iter().flatten() {
            let ns = super::object::namespace(item);
            match s.delete(&ctx.rt, ns, obj_name(item), &pre, dry_run)? {
                DeleteOutcome::Deleted(obj) | DeleteOutcome::Pending(obj) => deleted.push(obj),
            }
        }
        Ok(deleted)
    })?;
    let rv = ctx.shared.read(|s| s.current_rv());
    let list = json!({
        "kind": ctx.rt.list_kind(),
        "apiVersion": ctx.rt.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_like_the_apiserver() {
        let r = parse_route("/api/v1/namespaces/ns/secrets/a").unwrap();
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            ("", "v1", "secrets")
        );
        assert_eq!(
            (r.ns.as_deref(), r.name.as_deref(), r.sub),
            (Some("ns"), Some("a"), None)
        );
        let r = parse_route("/apis/g.dev/v1/namespaces/ns/things/x/status").unwrap();
        assert_eq!(
            (r.group.as_str(), r.sub.as_deref()),
            ("g.dev", Some("status"))
        );
        let r = parse_route("/apis/g.dev/v1/things").unwrap();
        assert_eq!((r.ns, r.name), (None, None));
        // A lone `namespaces/{name}` is the Namespace resource itself.
        let r = parse_route("/api/v1/namespaces/ns").unwrap();
        assert_eq!(
            (r.plural.as_str(), r.name.as_deref()),
            ("namespaces", Some("ns"))
        );
        assert!(parse_route("/api/v1/namespaces/ns/secrets/a/status/x").is_none());
        assert!(parse_route("/healthz").is_none());
        assert!(parse_route("/api//v1/secrets").is_none());
    }
}
