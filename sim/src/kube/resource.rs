//! The resource types the simulated API server serves.

use std::collections::BTreeMap;
use std::sync::Arc;

/// One served resource (a `GroupVersionResource` plus what the server knows about it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// Built into the core API (Secrets, ConfigMaps) rather than a custom resource.
    pub builtin: bool,
    /// The CRD's `openAPIV3Schema` for this version, when it was registered
    /// from a CRD manifest: writes are pruned, defaulted and validated with it.
    pub schema: Option<Arc<serde_json::Value>>,
}

impl ResourceType {
    fn builtin(plural: &str, kind: &str) -> Self {
        ResourceType {
            group: String::new(),
            version: "v1".into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced: true,
            status_subresource: false,
            builtin: true,
            schema: None,
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` for the core group, `plural.group` otherwise, as in apiserver messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind` for the core group, `Kind.group` otherwise, as in 422 messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Custom resources carry `metadata.generation`; Secrets and ConfigMaps do not.
    pub fn tracks_generation(&self) -> bool {
        !self.builtin
    }

    /// Custom resources refuse a PUT without `metadata.resourceVersion`.
    pub fn allows_unconditional_update(&self) -> bool {
        self.builtin
    }

    /// Custom resources answer a DELETE with the object; Secrets and ConfigMaps with a Status.
    pub fn returns_deleted_object(&self) -> bool {
        !self.builtin
    }

    /// Field selector labels the server accepts for this resource.
    pub fn supports_field(&self, field: &str) -> bool {
        matches!(field, "metadata.name" | "metadata.namespace")
            || (self.builtin && self.kind == "Secret" && field == "type")
    }
}

/// Registered resources, keyed by [`ResourceType::qualified`].
#[derive(Debug)]
pub(crate) struct Registry {
    by_name: BTreeMap<String, Arc<ResourceType>>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut registry = Registry {
            by_name: BTreeMap::new(),
        };
        registry.insert(ResourceType::builtin("secrets", "Secret"));
        registry.insert(ResourceType::builtin("configmaps", "ConfigMap"));
        registry
    }
}

impl Registry {
    pub fn insert(&mut self, rt: ResourceType) -> Arc<ResourceType> {
        let rt = Arc::new(rt);
        self.by_name.insert(rt.qualified(), rt.clone());
        rt
    }

    /// The resource served at `/api[s]/{group}/{version}/.../{plural}`.
    pub fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.by_name
            .values()
            .find(|rt| rt.group == group && rt.version == version && rt.plural == plural)
            .cloned()
    }

    /// The resource whose objects carry this `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.by_name
            .values()
            .find(|rt| rt.api_version() == api_version && rt.kind == kind)
            .cloned()
    }

    /// Looks a resource up by `plural.group`, or by bare `plural` when that is unambiguous.
    pub fn by_name(&self, name: &str) -> Option<Arc<ResourceType>> {
        if let Some(rt) = self.by_name.get(name) {
            return Some(rt.clone());
        }
        let mut matching = self.by_name.values().filter(|rt| rt.plural == name);
        match (matching.next(), matching.next()) {
            (Some(rt), None) => Some(rt.clone()),
            _ => None,
        }
    }
}
