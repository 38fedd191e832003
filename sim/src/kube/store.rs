//! The object store: one global resourceVersion counter, the current objects and
//! a log of every write since the last compaction (which serves watches and
//! consistent paginated lists, like etcd's MVCC history does for the apiserver).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Value, json};

use super::object::{
    copy_meta, finalizers_empty, generation, generation_relevant, is_deleting, name, namespace,
    normalize_builtin, now_timestamp, resource_version, set_meta, set_status, uid, validate_name,
    validate_shape,
};
use super::resource::{Registry, ResourceType};
use super::selector::Selectors;
use super::status::ApiError;

/// Storage key: resource (`plural.group`), namespace (empty when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ObjKey {
    pub res: String,
    pub ns: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(rt: &ResourceType, ns: &str, name: &str) -> Self {
        ObjKey {
            res: rt.qualified(),
            ns: if rt.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed write.
#[derive(Debug, Clone)]
struct LogEntry {
    rv: u64,
    key: ObjKey,
    event: EventType,
    /// The object as written (for deletes: the last state, at the delete's resourceVersion).
    object: Value,
    /// The object before this write, if it existed.
    prev: Option<Value>,
}

/// Which parts of an update the caller may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateMode {
    /// The main resource: `.status` is ignored when the status subresource is enabled.
    Main,
    /// The `/status` subresource: only `.status` changes.
    Status,
    /// The in-process control API: spec and status alike.
    Control,
}

pub(crate) enum PatchKind {
    /// RFC 7386 JSON merge patch (also used for strategic merge patch).
    Merge(Value),
    /// RFC 6902 JSON patch.
    Json(json_patch::Patch),
    /// Server-side apply, approximated as a merge that creates missing objects.
    Apply(Value),
}

pub(crate) enum DeleteOutcome {
    /// Removed from the store; carries the last state.
    Deleted(Value),
    /// Finalizers pending; carries the object with `deletionTimestamp` set.
    Pending(Value),
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct ListRequest {
    pub selectors: Selectors,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub version_match: Option<String>,
}

/// A watch event, already filtered through the watcher's selectors.
pub(crate) struct WatchEvent {
    pub event: EventType,
    pub object: Value,
}

/// The history a watch needs has been compacted away.
pub(crate) struct HistoryExpired;

#[derive(Debug, Default)]
pub(crate) struct Store {
    pub registry: Registry,
    rv: u64,
    /// Writes at or before this resourceVersion are no longer in the log.
    compacted_rv: u64,
    objects: BTreeMap<ObjKey, Value>,
    log: Vec<LogEntry>,
}

const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";

impl Store {
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// Drops the write history, like an etcd compaction at the current revision.
    pub fn compact(&mut self) {
        self.compacted_rv = self.rv;
        self.log.clear();
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&ObjKey::new(rt, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        mode: UpdateMode,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        validate_shape(rt, &obj)?;
        check_type_meta(rt, &obj)?;
        let ns = resolve_namespace(rt, ns, &obj)?;
        let mut obj_name = name(&obj).to_string();
        if obj_name.is_empty() {
            let prefix = obj
                .get("metadata")
                .and_then(|m| m.get("generateName"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            obj_name = format!("{prefix}{}", random_suffix());
        }
        validate_name(rt, &obj_name)?;
        let key = ObjKey::new(rt, &ns, &obj_name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(rt, &obj_name));
        }
        set_type_meta(rt, &mut obj);
        set_meta(&mut obj, "name", Some(obj_name.clone().into()));
        set_meta(&mut obj, "namespace", rt.namespaced.then(|| ns.into()));
        set_meta(
            &mut obj,
            "uid",
            Some(uuid::Uuid::new_v4().to_string().into()),
        );
        set_meta(&mut obj, "creationTimestamp", Some(now_timestamp().into()));
        set_meta(
            &mut obj,
            "generation",
            rt.tracks_generation().then(|| 1.into()),
        );
        for server_owned in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            set_meta(&mut obj, server_owned, None);
        }
        if mode != UpdateMode::Control && rt.status_subresource {
            set_status(&mut obj, None);
        }
        normalize_builtin(rt, &mut obj)?;
        admit_schema(rt, &obj_name, &mut obj)?;
        if dry_run {
            return Ok(obj);
        }
        Ok(self.commit(key, EventType::Added, obj))
    }

    /// PUT semantics: the body replaces the stored object.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        obj_name: &str,
        new: Value,
        mode: UpdateMode,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        validate_shape(rt, &new)?;
        check_type_meta(rt, &new)?;
        check_name(obj_name, &new)?;
        resolve_namespace(rt, ns, &new)?;
        let key = ObjKey::new(rt, ns, obj_name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, obj_name))?;
        let rv = resource_version(&new);
        if rv.is_empty() {
            if mode != UpdateMode::Control && !rt.allows_unconditional_update() {
                return Err(ApiError::invalid(
                    rt,
                    obj_name,
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                ));
            }
        } else if rv != resource_version(&old) {
            return Err(stale(rt, obj_name));
        }
        self.apply_update(rt, key, old, new, mode, dry_run)
    }

    /// PATCH semantics; returns the object and whether it was created (apply only).
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        obj_name: &str,
        patch: PatchKind,
        status: bool,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        let key = ObjKey::new(rt, ns, obj_name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return match patch {
                PatchKind::Apply(mut obj) if !status => {
                    check_name(obj_name, &obj)?;
                    validate_shape(rt, &obj)?;
                    set_meta(&mut obj, "name", Some(obj_name.into()));
                    let created = self.create(rt, ns, obj, UpdateMode::Main, dry_run)?;
                    Ok((created, true))
                }
                _ => Err(ApiError::not_found(rt, obj_name)),
            };
        };
        let mut patched = old.clone();
        match patch {
            PatchKind::Merge(p) => json_patch::merge(&mut patched, &p),
            PatchKind::Apply(p) => {
                check_name(obj_name, &p)?;
                json_patch::merge(&mut patched, &p)
            }
            PatchKind::Json(ops) => json_patch::patch(&mut patched, &ops.0)
                .map_err(|e| ApiError::invalid(rt, obj_name, &format!("json patch: {e}")))?,
        }
        validate_shape(rt, &patched)?;
        check_type_meta(rt, &patched)?;
        check_name(obj_name, &patched)?;
        resolve_namespace(rt, ns, &patched)?;
        let rv = resource_version(&patched);
        if !rv.is_empty() && rv != resource_version(&old) {
            return Err(stale(rt, obj_name));
        }
        let mode = if status {
            UpdateMode::Status
        } else {
            UpdateMode::Main
        };
        let updated = self.apply_update(rt, key, old, patched, mode, dry_run)?;
        Ok((updated, false))
    }

    /// Writes `new` over `old` after the server-side rules: server-owned metadata,
    /// status subresource separation, generation, no-op detection and finalizers.
    fn apply_update(
        &mut self,
        rt: &ResourceType,
        key: ObjKey,
        old: Value,
        new: Value,
        mode: UpdateMode,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut result = if mode == UpdateMode::Status {
            let mut r = old.clone();
            set_status(&mut r, new.get("status").cloned());
            r
        } else {
            let mut r = new;
            if mode == UpdateMode::Main && rt.status_subresource {
                set_status(&mut r, old.get("status").cloned());
            }
            for server_owned in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                copy_meta(&mut r, &old, server_owned);
            }
            set_type_meta(rt, &mut r);
            set_meta(&mut r, "name", Some(key.name.clone().into()));
            set_meta(
                &mut r,
                "namespace",
                rt.namespaced.then(|| key.ns.clone().into()),
            );
            r
        };
        normalize_builtin(rt, &mut result)?;
        // Before the generation check: pruned fields are no change.
        admit_schema(rt, &key.name, &mut result)?;
        copy_meta(&mut result, &old, "resourceVersion");
        if rt.tracks_generation()
            && generation_relevant(rt, &old) != generation_relevant(rt, &result)
        {
            set_meta(
                &mut result,
                "generation",
                Some((generation(&old) + 1).into()),
            );
        }
        if result == old {
            // Like etcd3's GuaranteedUpdate: an unchanged object is not written.
            return Ok(old);
        }
        if dry_run {
            return Ok(result);
        }
        if is_deleting(&result) && finalizers_empty(&result) {
            return Ok(self.commit(key, EventType::Deleted, result));
        }
        Ok(self.commit(key, EventType::Modified, result))
    }

    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        obj_name: &str,
        pre: &Preconditions,
        dry_run: bool,
    ) -> Result<DeleteOutcome, ApiError> {
        let key = ObjKey::new(rt, ns, obj_name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, obj_name))?;
        if let Some(want) = pre.uid.as_deref().filter(|u| *u != uid(&old)) {
            let why = format!(
                "Precondition failed: UID in precondition: {want}, UID in object meta: {}",
                uid(&old)
            );
            return Err(ApiError::conflict(rt, obj_name, &why));
        }
        if let Some(want) = pre
            .resource_version
            .as_deref()
            .filter(|rv| *rv != resource_version(&old))
        {
            let why = format!(
                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                resource_version(&old)
            );
            return Err(ApiError::conflict(rt, obj_name, &why));
        }
        if !finalizers_empty(&old) {
            if is_deleting(&old) {
                return Ok(DeleteOutcome::Pending(old));
            }
            let mut marked = old.clone();
            set_meta(
                &mut marked,
                "deletionTimestamp",
                Some(now_timestamp().into()),
            );
            set_meta(&mut marked, "deletionGracePeriodSeconds", Some(0.into()));
            if rt.tracks_generation() {
                set_meta(
                    &mut marked,
                    "generation",
                    Some((generation(&old) + 1).into()),
                );
            }
            if dry_run {
                return Ok(DeleteOutcome::Pending(marked));
            }
            let marked = self.commit(key, EventType::Modified, marked);
            return Ok(DeleteOutcome::Pending(marked));
        }
        if dry_run {
            return Ok(DeleteOutcome::Deleted(old));
        }
        Ok(DeleteOutcome::Deleted(self.commit(
            key,
            EventType::Deleted,
            old,
        )))
    }

    /// Bumps the resourceVersion, stamps it on the object and records the write.
    fn commit(&mut self, key: ObjKey, event: EventType, mut obj: Value) -> Value {
        self.rv += 1;
        set_meta(
            &mut obj,
            "resourceVersion",
            Some(self.rv.to_string().into()),
        );
        let prev = match event {
            EventType::Deleted => self.objects.remove(&key),
            _ => self.objects.insert(key.clone(), obj.clone()),
        };
        self.log.push(LogEntry {
            rv: self.rv,
            key,
            event,
            object: obj.clone(),
            prev,
        });
        obj
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        req: &ListRequest,
    ) -> Result<Value, ApiError> {
        let (snapshot_rv, start) = match &req.continue_token {
            Some(token) => {
                if req
                    .resource_version
                    .as_deref()
                    .is_some_and(|r| !r.is_empty())
                {
                    return Err(ApiError::bad_request(
                        "specifying resource version is not allowed when using continue",
                    ));
                }
                let (rv, start) = decode_continue(token)?;
                if rv < self.compacted_rv {
                    return Err(ApiError::expired(CONTINUE_EXPIRED));
                }
                (rv, Some(start))
            }
            None => (self.resolve_list_rv(req)?, None),
        };
        let snapshot = self.snapshot(rt, ns, snapshot_rv);
        let mut matching = snapshot
            .iter()
            .filter(|(k, _)| {
                start
                    .as_ref()
                    .is_none_or(|(sns, sname)| (&k.ns, &k.name) > (sns, sname))
            })
            .filter(|(_, v)| req.selectors.matches(v));
        let limit = req.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let page: Vec<(&ObjKey, &Value)> = matching.by_ref().take(limit).collect();
        let remaining = matching.count();
        let mut metadata = json!({"resourceVersion": snapshot_rv.to_string()});
        if remaining > 0
            && let Some((last, _)) = page.last()
        {
            metadata["continue"] = encode_continue(snapshot_rv, &last.ns, &last.name).into();
            if req.selectors.is_empty() {
                metadata["remainingItemCount"] = remaining.into();
            }
        }
        let items: Vec<Value> = page
            .into_iter()
            .map(|(_, v)| {
                let mut v = v.clone();
                // Items of built-in lists carry no type meta on the wire.
                if rt.builtin
                    && let Some(obj) = v.as_object_mut()
                {
                    obj.remove("apiVersion");
                    obj.remove("kind");
                }
                v
            })
            .collect();
        Ok(json!({
            "kind": rt.list_kind(),
            "apiVersion": rt.api_version(),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// The resourceVersion a list without a continue token is served at.
    fn resolve_list_rv(&self, req: &ListRequest) -> Result<u64, ApiError> {
        let rv = req.resource_version.as_deref().filter(|r| !r.is_empty());
        let Some(rv) = rv else {
            if req.version_match.is_some() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            return Ok(self.rv);
        };
        let n: u64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
        if n > self.rv {
            return Err(too_large(n, self.rv));
        }
        match req.version_match.as_deref() {
            None | Some("NotOlderThan") => Ok(self.rv),
            Some("Exact") => {
                if n == 0 {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        "resourceVersionMatch: Forbidden: resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
                    ));
                }
                if n < self.compacted_rv {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {n} ({})",
                        self.compacted_rv
                    )));
                }
                Ok(n)
            }
            Some(other) => Err(ApiError::new(
                422,
                "Invalid",
                format!("resourceVersionMatch: Unsupported value: {other:?}"),
            )),
        }
    }

    /// The resource's objects (in `ns`, or all namespaces) as of resourceVersion `rv`,
    /// rebuilt by undoing logged writes newer than `rv`.
    fn snapshot(&self, rt: &ResourceType, ns: Option<&str>, rv: u64) -> BTreeMap<ObjKey, Value> {
        let res = rt.qualified();
        let in_scope = |k: &ObjKey| k.res == res && ns.is_none_or(|n| k.ns == n);
        let mut map: BTreeMap<ObjKey, Value> = self
            .objects
            .iter()
            .filter(|(k, _)| in_scope(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for entry in self.log.iter().rev().take_while(|e| e.rv > rv) {
            if !in_scope(&entry.key) {
                continue;
            }
            match &entry.prev {
                Some(prev) => map.insert(entry.key.clone(), prev.clone()),
                None => map.remove(&entry.key),
            };
        }
        map
    }

    /// Current objects matching a watch, for its synthetic initial ADDED events.
    pub fn current(&self, rt: &ResourceType, ns: Option<&str>, sel: &Selectors) -> Vec<Value> {
        self.snapshot(rt, ns, self.rv)
            .into_values()
            .filter(|v| sel.matches(v))
            .collect()
    }

    /// Whether a watch may resume from `rv` (its history is still retained).
    pub fn can_watch_from(&self, rv: u64) -> bool {
        rv >= self.compacted_rv
    }

    pub fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    /// Events after `pos` that a watch on `rt`/`ns` with `sel` should see, and the
    /// resourceVersion up to which the log was read. Objects moving into or out of
    /// the selection show up as ADDED or DELETED, as from the apiserver's watch cache.
    pub fn events_after(
        &self,
        pos: u64,
        rt: &ResourceType,
        ns: Option<&str>,
        sel: &Selectors,
    ) -> Result<(Vec<WatchEvent>, u64), HistoryExpired> {
        if !self.can_watch_from(pos) {
            return Err(HistoryExpired);
        }
        let res = rt.qualified();
        let start = self.log.partition_point(|e| e.rv <= pos);
        let mut events = Vec::new();
        for entry in &self.log[start..] {
            if entry.key.res != res || ns.is_some_and(|n| entry.key.ns != n) {
                continue;
            }
            let now = sel.matches(&entry.object);
            let before = entry.prev.as_ref().is_some_and(|p| sel.matches(p));
            let (event, object) = match (entry.event, before, now) {
                (EventType::Added, _, true) => (EventType::Added, entry.object.clone()),
                (EventType::Deleted, _, true) => (EventType::Deleted, entry.object.clone()),
                (EventType::Modified, true, true) => (EventType::Modified, entry.object.clone()),
                (EventType::Modified, false, true) => (EventType::Added, entry.object.clone()),
                (EventType::Modified, true, false) => {
                    let mut gone = entry.prev.clone().unwrap_or_default();
                    set_meta(
                        &mut gone,
                        "resourceVersion",
                        Some(entry.rv.to_string().into()),
                    );
                    (EventType::Deleted, gone)
                }
                _ => continue,
            };
            events.push(WatchEvent { event, object });
        }
        Ok((events, self.rv))
    }
}

/// Prunes, defaults and validates a custom resource registered with its
/// CRD schema, as the apiserver does on every create and update.
fn admit_schema(rt: &ResourceType, name: &str, obj: &mut Value) -> Result<(), ApiError> {
    let Some(schema) = &rt.schema else {
        return Ok(());
    };
    super::schema::admit(schema, obj).map_err(|errors| ApiError::invalid_fields(rt, name, &errors))
}

fn stale(rt: &ResourceType, obj_name: &str) -> ApiError {
    ApiError::conflict(
        rt,
        obj_name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

fn too_large(requested: u64, current: u64) -> ApiError {
    let mut err = ApiError::new(
        504,
        "Timeout",
        format!("Too large resource version: {requested}, current: {current}"),
    );
    err.details = Some(json!({
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }));
    err
}

/// A body's `apiVersion`/`kind`, when given, must be the resource's.
fn check_type_meta(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!api_version.is_empty() && api_version != rt.api_version())
        || (!kind.is_empty() && kind != rt.kind)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) and kind ({kind}) do not match the expected {}, {}",
            rt.api_version(),
            rt.kind
        )));
    }
    Ok(())
}

fn set_type_meta(rt: &ResourceType, obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), rt.api_version().into());
        o.insert("kind".into(), rt.kind.clone().into());
    }
}

fn check_name(url_name: &str, obj: &Value) -> Result<(), ApiError> {
    let body_name = name(obj);
    if !body_name.is_empty() && body_name != url_name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
        )));
    }
    Ok(())
}

/// The namespace a write goes to: the URL's, which a body namespace must agree with.
fn resolve_namespace(rt: &ResourceType, url_ns: &str, obj: &Value) -> Result<String, ApiError> {
    if !rt.namespaced {
        return Ok(String::new());
    }
    let body_ns = namespace(obj);
    if !body_ns.is_empty() && body_ns != url_ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(url_ns.to_string())
}

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{ns}/{name}\u{0}")});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    let invalid = || ApiError::bad_request("continue key is not valid");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let parsed: Value = serde_json::from_slice(&raw).map_err(|_| invalid())?;
    let rv = parsed
        .get("rv")
        .and_then(Value::as_u64)
        .ok_or_else(invalid)?;
    let start = parsed
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let (ns, name) = start
        .trim_end_matches('\u{0}')
        .split_once('/')
        .ok_or_else(invalid)?;
    Ok((rv, (ns.to_string(), name.to_string())))
}
