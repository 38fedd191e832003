//! An in-process double of the Kubernetes API server, for tests.
//!
//! The real `kube` client (typed `Api`s, `kube::runtime::watcher`) runs against it
//! unchanged over plain HTTP on `127.0.0.1`. It serves core `v1` Secrets and
//! ConfigMaps plus any registered custom resources, with the apiserver semantics a
//! controller depends on:
//!
//! - one global resourceVersion, bumped by every write; `uid`, `creationTimestamp`,
//!   and for custom resources `metadata.generation` (bumped only by changes outside
//!   `metadata` and, with the status subresource, `status`); unchanged writes are
//!   not written, as in etcd;
//! - get, list (label/field selectors, `limit`/`continue` over a consistent
//!   snapshot), create, replace (optimistic concurrency), merge/JSON/apply patches,
//!   delete (with finalizers and preconditions), the `/status` subresource;
//! - watches replaying history from a resourceVersion, `410 Expired` once that
//!   history is compacted, bookmarks, `timeoutSeconds`, streaming lists
//!   (`sendInitialEvents`);
//! - errors as `Status` objects, so kube's error types see what a cluster returns;
//! - once RBAC objects are loaded ([`KubeSim::apply_rbac_yaml`]): bearer tokens
//!   of service accounts ([`KubeSim::service_account_client`]) and RBAC
//!   authorization with the apiserver's 401/403 answers;
//! - for CRDs registered from their manifest ([`KubeSim::register_crd_manifest`]):
//!   pruning of unknown fields, defaulting and `openAPIV3Schema` validation
//!   (422 Invalid with per-field causes).
//!
//! Tests drive it through [`KubeSim`]: direct object access, [`KubeSim::compact`],
//! [`KubeSim::drop_watches`], fault injection and request inspection.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use k8s_openapi::api::core::v1::Secret;
//! use teleport_plugin_sim::kube::KubeSim;
//!
//! let sim = KubeSim::start().await;
//! let secrets: kube::Api<Secret> = kube::Api::default_namespaced(sim.client());
//! let listed = secrets.list(&Default::default()).await?;
//! assert!(listed.items.is_empty());
//! # Ok(()) }
//! ```

mod http;
mod object;
mod rbac;
mod resource;
mod schema;
mod selector;
mod state;
mod status;
mod store;
mod watch;

use std::any::TypeId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::kube::core::{NamespaceResourceScope, Status};
use ::kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use state::RequestRecord;

use resource::ResourceType;
use state::Shared;
use status::ApiError;
use store::{PatchKind, Preconditions, UpdateMode};

/// Tunables of a simulated API server.
#[derive(Debug, Clone)]
pub struct KubeSimOptions {
    /// How often watches that allow bookmarks receive a BOOKMARK event
    /// (the apiserver sends one about every minute).
    pub bookmark_interval: Duration,
}

impl Default for KubeSimOptions {
    fn default() -> Self {
        KubeSimOptions {
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

/// Handle to a running simulated API server; clones share the same server,
/// which shuts down when the last handle is dropped.
#[derive(Clone)]
pub struct KubeSim {
    shared: Arc<Shared>,
    server: Arc<Server>,
}

/// Owns the listening task.
struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    shared: Arc<Shared>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Open watch streams would otherwise keep their connections alive.
        self.shared.drop_watches();
    }
}

impl std::fmt::Debug for KubeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSim")
            .field("addr", &self.server.addr)
            .finish_non_exhaustive()
    }
}

impl KubeSim {
    /// Starts a server with default options on an ephemeral port.
    ///
    /// # Panics
    /// If no local port can be bound (a broken test environment).
    pub async fn start() -> KubeSim {
        Self::start_with(KubeSimOptions::default()).await
    }

    /// Starts a server with the given options.
    ///
    /// # Panics
    /// If no local port can be bound (a broken test environment).
    pub async fn start_with(options: KubeSimOptions) -> KubeSim {
        Self::try_start_with(options)
            .await
            .expect("bind the simulated Kubernetes API server to 127.0.0.1")
    }

    /// Starts a server, reporting a failure to bind instead of panicking.
    pub async fn try_start_with(options: KubeSimOptions) -> std::io::Result<KubeSim> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(options.bookmark_interval));
        let shutdown = CancellationToken::new();
        let app = http::router(shared.clone());
        let stop = shutdown.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(error = %e, "simulated Kubernetes API server stopped");
            }
        });
        Ok(KubeSim {
            server: Arc::new(Server {
                addr,
                shutdown,
                shared: shared.clone(),
            }),
            shared,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// A kube client for this server whose default namespace is `default`.
    pub fn client(&self) -> Client {
        self.client_in("default")
    }

    /// A kube client for this server with the given default namespace.
    pub fn client_in(&self, namespace: &str) -> Client {
        let url = self
            .base_url()
            .parse()
            .expect("a socket address forms a valid URI");
        let mut config = Config::new(url);
        config.default_namespace = namespace.to_string();
        Client::try_from(config).expect("a plain-HTTP kube client builds from a static config")
    }

    /// Serves a custom resource at `/apis/{group}/{version}/[namespaces/{ns}/]{plural}`.
    /// Registering the same group and plural again replaces the definition.
    pub fn register_crd(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        status_subresource: bool,
    ) {
        let rt = ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            status_subresource,
            builtin: false,
            schema: None,
        };
        self.shared.write(|s| s.registry.insert(rt));
    }

    /// Serves the custom resource a `CustomResourceDefinition` manifest (YAML or
    /// JSON) defines, in its storage version, with that version's schema:
    /// from then on writes are pruned, defaulted and validated like the
    /// apiserver does.
    pub fn register_crd_manifest(&self, manifest: &str) -> Result<(), String> {
        let crd: Value = serde_yaml::from_str(manifest).map_err(|e| format!("CRD manifest: {e}"))?;
        if crd.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            return Err("the manifest is not a CustomResourceDefinition".into());
        }
        let spec = &crd["spec"];
        let text = |v: &Value, what: &str| {
            v.as_str()
                .map(String::from)
                .ok_or_else(|| format!("CRD manifest: {what} is missing"))
        };
        let versions = spec["versions"].as_array().cloned().unwrap_or_default();
        let version = versions
            .iter()
            .find(|v| v["storage"] == Value::Bool(true))
            .or(versions.first())
            .ok_or("CRD manifest: spec.versions is empty")?;
        let schema = version["schema"]["openAPIV3Schema"].clone();
        let rt = ResourceType {
            group: text(&spec["group"], "spec.group")?,
            version: text(&version["name"], "spec.versions[].name")?,
            plural: text(&spec["names"]["plural"], "spec.names.plural")?,
            kind: text(&spec["names"]["kind"], "spec.names.kind")?,
            namespaced: spec["scope"] != "Cluster",
            status_subresource: version["subresources"].get("status").is_some(),
            builtin: false,
            schema: schema.is_object().then(|| Arc::new(schema)),
        };
        self.shared.write(|s| s.registry.insert(rt));
        Ok(())
    }

    // ----- authentication and RBAC -----

    /// Loads Roles, ClusterRoles, RoleBindings and ClusterRoleBindings from a
    /// multi-document YAML (e.g. a chart's rendered RBAC), replacing objects of
    /// the same kind and name. From the first one on, every request is
    /// authorized; returns how many objects were loaded.
    pub fn apply_rbac_yaml(&self, yaml: &str) -> Result<usize, String> {
        let mut loaded = 0;
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let value = Value::deserialize(doc).map_err(|e| format!("RBAC YAML: {e}"))?;
            if value.is_null() {
                continue;
            }
            self.apply_rbac_json(value)?;
            loaded += 1;
        }
        Ok(loaded)
    }

    /// Loads one RBAC object (see [`apply_rbac_yaml`](Self::apply_rbac_yaml)).
    pub fn apply_rbac_json(&self, obj: Value) -> Result<(), String> {
        self.shared.with_policy(|p| p.apply(obj))
    }

    /// The bearer token of the service account `ns/name` (the same on every call).
    pub fn service_account_token(&self, ns: &str, name: &str) -> String {
        self.shared.with_policy(|p| p.token_for(ns, name))
    }

    /// A kube client authenticating as the service account `ns/name`, with
    /// `ns` as its default namespace, as a pod running under it would.
    pub fn service_account_client(&self, ns: &str, name: &str) -> Client {
        let token = self.service_account_token(ns, name);
        let url = self
            .base_url()
            .parse()
            .expect("a socket address forms a valid URI");
        let mut config = Config::new(url);
        config.default_namespace = ns.to_string();
        config.headers.push((
            ::http::header::AUTHORIZATION,
            ::http::HeaderValue::from_str(&format!("Bearer {token}"))
                .expect("a generated token is a valid header value"),
        ));
        Client::try_from(config).expect("a plain-HTTP kube client builds from a static config")
    }

    /// [`register_crd`](Self::register_crd) with names and scope taken from a type,
    /// e.g. one generated by `#[derive(CustomResource)]`.
    pub fn register_resource<K>(&self, status_subresource: bool)
    where
        K: Resource<DynamicType = ()>,
        K::Scope: 'static,
    {
        let namespaced = TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>();
        self.register_crd(
            &K::group(&()),
            &K::version(&()),
            &K::plural(&()),
            &K::kind(&()),
            namespaced,
            status_subresource,
        );
    }

    // ----- direct object access (bypasses HTTP, same semantics and events) -----

    /// Creates or unconditionally replaces an object, `status` included. The
    /// resource comes from `apiVersion`/`kind`; a missing namespace means `default`.
    pub fn put_json(&self, obj: Value) -> Result<Value, Box<Status>> {
        let rt = self.rt_for_object(&obj)?;
        let (ns, name) = object_target(&rt, &obj);
        self.shared
            .write(|s| {
                if !name.is_empty() && s.get(&rt, &ns, &name).is_ok() {
                    let mut obj = obj;
                    object::set_meta(&mut obj, "resourceVersion", None);
                    s.update(&rt, &ns, &name, obj, UpdateMode::Control, false)
                } else {
                    s.create(&rt, &ns, obj, UpdateMode::Control, false)
                }
            })
            .map_err(ApiError::into_kube)
    }

    /// Typed [`put_json`](Self::put_json).
    pub fn put<K>(&self, obj: &K) -> Result<K, Box<Status>>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        from_value(self.put_json(to_value::<K>(obj)?)?)
    }

    /// Creates an object like a POST would (status included); fails if it exists.
    pub fn create_json(&self, obj: Value) -> Result<Value, Box<Status>> {
        let rt = self.rt_for_object(&obj)?;
        let (ns, _) = object_target(&rt, &obj);
        self.shared
            .write(|s| s.create(&rt, &ns, obj, UpdateMode::Control, false))
            .map_err(ApiError::into_kube)
    }

    /// Typed [`create_json`](Self::create_json).
    pub fn create<K>(&self, obj: &K) -> Result<K, Box<Status>>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        from_value(self.create_json(to_value::<K>(obj)?)?)
    }

    /// The stored object. `resource` is `plural` or `plural.group`; `ns` is
    /// ignored for cluster-scoped resources.
    pub fn get_json(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        let rt = self.rt_named(resource).ok()?;
        self.shared.read(|s| s.get(&rt, ns, name)).ok()
    }

    /// Typed [`get_json`](Self::get_json).
    pub fn get<K>(&self, ns: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let rt = self.rt_for::<K>().ok()?;
        let obj = self.shared.read(|s| s.get(&rt, ns, name)).ok()?;
        serde_json::from_value(obj).ok()
    }

    /// All stored objects of a resource, in one namespace or (with `None`) all.
    pub fn list_json(&self, resource: &str, ns: Option<&str>) -> Vec<Value> {
        let Ok(rt) = self.rt_named(resource) else {
            return Vec::new();
        };
        self.shared
            .read(|s| s.current(&rt, ns, &selector::Selectors::default()))
    }

    /// Applies a JSON merge patch to the main resource (`status` is ignored when
    /// the resource has a status subresource), like a PATCH request.
    pub fn patch_json(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        merge_patch: &Value,
    ) -> Result<Value, Box<Status>> {
        self.patch_inner(self.rt_named(resource)?, ns, name, merge_patch, false)
    }

    /// Applies a JSON merge patch to the `/status` subresource.
    pub fn patch_status_json(
        &self,
        resource: &str,
        ns: &str,
        name: &str,
        merge_patch: &Value,
    ) -> Result<Value, Box<Status>> {
        self.patch_inner(self.rt_named(resource)?, ns, name, merge_patch, true)
    }

    /// Typed [`patch_json`](Self::patch_json).
    pub fn patch<K>(&self, ns: &str, name: &str, merge_patch: &Value) -> Result<K, Box<Status>>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        from_value(self.patch_inner(self.rt_for::<K>()?, ns, name, merge_patch, false)?)
    }

    /// Typed [`patch_status_json`](Self::patch_status_json).
    pub fn patch_status<K>(
        &self,
        ns: &str,
        name: &str,
        merge_patch: &Value,
    ) -> Result<K, Box<Status>>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        from_value(self.patch_inner(self.rt_for::<K>()?, ns, name, merge_patch, true)?)
    }

    fn patch_inner(
        &self,
        rt: Arc<ResourceType>,
        ns: &str,
        name: &str,
        merge_patch: &Value,
        status: bool,
    ) -> Result<Value, Box<Status>> {
        let patch = PatchKind::Merge(merge_patch.clone());
        self.shared
            .write(|s| s.patch(&rt, ns, name, patch, status, false))
            .map(|(obj, _)| obj)
            .map_err(ApiError::into_kube)
    }

    /// Deletes an object like a DELETE would: with finalizers present it only
    /// gains a `deletionTimestamp`.
    pub fn delete_json(&self, resource: &str, ns: &str, name: &str) -> Result<(), Box<Status>> {
        self.delete_inner(self.rt_named(resource)?, ns, name)
    }

    /// Typed [`delete_json`](Self::delete_json).
    pub fn delete<K>(&self, ns: &str, name: &str) -> Result<(), Box<Status>>
    where
        K: Resource<DynamicType = ()>,
    {
        self.delete_inner(self.rt_for::<K>()?, ns, name)
    }

    fn delete_inner(&self, rt: Arc<ResourceType>, ns: &str, name: &str) -> Result<(), Box<Status>> {
        self.shared
            .write(|s| s.delete(&rt, ns, name, &Preconditions::default(), false))
            .map(|_| ())
            .map_err(ApiError::into_kube)
    }

    // ----- history and connections -----

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.read(|s| s.current_rv())
    }

    /// Drops the event history: watches resuming from an older resourceVersion
    /// (and continue tokens issued before now) get `410 Expired`.
    pub fn compact(&self) {
        self.shared.write(|s| s.compact());
    }

    /// Ends every open watch stream, as an apiserver restart would.
    pub fn drop_watches(&self) {
        self.shared.drop_watches();
    }

    /// Number of watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches()
    }

    // ----- fault injection and request inspection -----

    /// The next `n` requests (any verb, any resource) fail with `status`
    /// (its `code`, or 500 when unset).
    pub fn fail_next(&self, n: usize, status: Status) {
        self.shared
            .add_fault(n, None, None, ApiError::from_kube(&status));
    }

    /// The next `n` requests with this verb (e.g. `watch`, `patch`) on this
    /// resource (e.g. `secrets`, `things/status`) fail with `status`.
    pub fn fail_next_for(&self, verb: &str, resource: &str, n: usize, status: Status) {
        self.shared.add_fault(
            n,
            Some(verb.to_string()),
            Some(resource.to_string()),
            ApiError::from_kube(&status),
        );
    }

    /// How many requests with this verb reached this resource (see [`RequestRecord`]).
    pub fn request_count(&self, verb: &str, resource: &str) -> usize {
        self.shared.with_records(|records| {
            records
                .iter()
                .filter(|r| r.verb == verb && r.resource == resource)
                .count()
        })
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.records()
    }

    /// The latest request with this verb on this resource.
    pub fn last_request(&self, verb: &str, resource: &str) -> Option<RequestRecord> {
        self.shared.with_records(|records| {
            records
                .iter()
                .rev()
                .find(|r| r.verb == verb && r.resource == resource)
                .cloned()
        })
    }

    /// The raw query string of the latest request with this verb on this resource.
    pub fn last_query(&self, verb: &str, resource: &str) -> Option<String> {
        self.last_request(verb, resource).map(|r| r.query)
    }

    /// Waits until `condition` holds, re-checking after every request, write or
    /// watch open/close. Returns whether it held before `timeout` ran out.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&KubeSim) -> bool,
    ) -> bool {
        let mut activity = self.shared.activity.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            tokio::select! {
                changed = activity.changed() => {
                    if changed.is_err() {
                        return condition(self);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return condition(self),
            }
        }
    }

    // ----- lookups -----

    fn rt_named(&self, resource: &str) -> Result<Arc<ResourceType>, Box<Status>> {
        self.shared
            .read(|s| s.registry.by_name(resource))
            .ok_or_else(|| not_registered(resource))
    }

    fn rt_for<K: Resource<DynamicType = ()>>(&self) -> Result<Arc<ResourceType>, Box<Status>> {
        let (group, version, plural) = (K::group(&()), K::version(&()), K::plural(&()));
        self.shared
            .read(|s| s.registry.by_path(&group, &version, &plural))
            .ok_or_else(|| not_registered(&format!("{plural}.{group}/{version}")))
    }

    fn rt_for_object(&self, obj: &Value) -> Result<Arc<ResourceType>, Box<Status>> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        self.shared
            .read(|s| s.registry.by_kind(api_version, kind))
            .ok_or_else(|| not_registered(&format!("{kind} ({api_version})")))
    }
}

/// Namespace (defaulting to `default`) and name an object is written to.
fn object_target(rt: &ResourceType, obj: &Value) -> (String, String) {
    let ns = match object::namespace(obj) {
        "" if rt.namespaced => "default",
        ns => ns,
    };
    (ns.to_string(), object::name(obj).to_string())
}

fn not_registered(what: &str) -> Box<Status> {
    ApiError::new(404, "NotFound", format!("resource {what} is not served")).into_kube()
}

fn to_value<K: Resource<DynamicType = ()> + Serialize>(obj: &K) -> Result<Value, Box<Status>> {
    let mut value = serde_json::to_value(obj)
        .map_err(|e| ApiError::bad_request(format!("serialize object: {e}")).into_kube())?;
    // k8s-openapi types serialize their type meta; derived custom resources too,
    // but fill it in for any type that does not.
    if let Some(map) = value.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| K::api_version(&()).into_owned().into());
        map.entry("kind")
            .or_insert_with(|| K::kind(&()).into_owned().into());
    }
    Ok(value)
}

fn from_value<K: DeserializeOwned>(value: Value) -> Result<K, Box<Status>> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::internal(format!("stored object does not decode: {e}")).into_kube())
}
