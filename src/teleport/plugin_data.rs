//! Plugin data: the per-request memory the plugin keeps inside Teleport.
//!
//! The codec reads and writes the keys and encodings of the official access
//! request plugins, so a cluster can move between them and this plugin
//! without double posts. Keys this codec does not know are kept verbatim in
//! [`RequestData::extra`]; the engine stores its own bookkeeping there.
//!
//! Writes are compare-and-swap: the server checks `expect` and answers
//! FAILED_PRECONDITION on a mismatch, and we re-read and retry.
//!
//! Sharing the data with the official plugins: they decode it into their Go
//! struct and use its re-encoding as the `expect` of their next write. So
//! JSON values are written byte for byte as Go writes them ([`gojson`]), and
//! a write only sets the keys whose decoded value changed: a stored value we
//! did not change stays as its writer left it.

pub mod gojson;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use tonic::{Code, Status};

use super::client::TeleportClient;

/// Plugin data kind for access requests.
pub const ACCESS_REQUEST_KIND: &str = "access_request";

/// Keys written by the official plugins (and by us, with the same meaning).
const OFFICIAL_KEYS: &[&str] = &[
    "user",
    "roles",
    "resources",
    "request_reason",
    "reviews_count",
    "resolution",
    "resolve_reason",
    "system_annotations",
    "suggested_reviewers",
    "logins_by_role",
    "max_duration",
    "messages",
];
/// Read-only legacy keys (single-message Slack and Mattermost data).
const LEGACY_KEYS: &[&str] = &["channel_id", "timestamp", "postID"];

/// Final state recorded for a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Resolution {
    #[default]
    Unresolved,
    Approved,
    Denied,
    Expired,
    Promoted,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unresolved => "",
            Self::Approved => "APPROVED",
            Self::Denied => "DENIED",
            Self::Expired => "EXPIRED",
            Self::Promoted => "PROMOTED",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "APPROVED" => Self::Approved,
            "DENIED" => Self::Denied,
            "EXPIRED" => Self::Expired,
            "PROMOTED" => Self::Promoted,
            _ => Self::Unresolved,
        }
    }

    pub fn is_resolved(self) -> bool {
        self != Self::Unresolved
    }
}

/// A posted chat message: channel and message id (Slack: `ts`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageRef {
    pub channel_id: String,
    pub message_id: String,
}

/// Decoded plugin data of one access request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestData {
    pub user: String,
    pub roles: Vec<String>,
    pub resources: Vec<String>,
    pub request_reason: String,
    pub reviews_count: usize,
    pub resolution: Resolution,
    pub resolve_reason: String,
    pub system_annotations: BTreeMap<String, Vec<String>>,
    pub suggested_reviewers: Vec<String>,
    pub logins_by_role: BTreeMap<String, Vec<String>>,
    /// RFC 3339, kept as written.
    pub max_duration: String,
    pub messages: Vec<MessageRef>,
    /// Every other key, preserved across our writes.
    pub extra: BTreeMap<String, String>,
}

/// A value another writer corrupted only affects display; never block on it
/// (it is kept as stored unless we change that field).
fn json_or_default<T: Default>(s: Option<&String>, parse: impl Fn(&str) -> Result<T, gojson::DecodeError>) -> T {
    s.filter(|s| !s.is_empty()).and_then(|s| parse(s).ok()).unwrap_or_default()
}

impl RequestData {
    pub fn decode(map: &HashMap<String, String>) -> Self {
        let get = |k: &str| map.get(k).cloned().unwrap_or_default();
        let mut messages: Vec<MessageRef> = Vec::new();
        // Legacy single-message layouts come first, as the official decoder does.
        let legacy_channel = get("channel_id");
        for legacy_id in [get("timestamp"), get("postID")] {
            if !legacy_channel.is_empty() && !legacy_id.is_empty() {
                messages.push(MessageRef { channel_id: legacy_channel.clone(), message_id: legacy_id });
            }
        }
        for pair in get("messages").split(',').filter(|p| !p.is_empty()) {
            let parts: Vec<&str> = pair.split('/').collect();
            if let [channel, id] = parts[..] {
                messages.push(MessageRef { channel_id: channel.into(), message_id: id.into() });
            }
        }
        let roles = get("roles");
        Self {
            user: get("user"),
            roles: if roles.is_empty() { Vec::new() } else { roles.split(',').map(String::from).collect() },
            resources: json_or_default(map.get("resources"), gojson::parse_string_list),
            request_reason: get("request_reason"),
            reviews_count: get("reviews_count").parse().unwrap_or(0),
            resolution: Resolution::parse(&get("resolution")),
            resolve_reason: get("resolve_reason"),
            system_annotations: json_or_default(map.get("system_annotations"), gojson::parse_string_list_map),
            suggested_reviewers: json_or_default(map.get("suggested_reviewers"), gojson::parse_string_list),
            logins_by_role: json_or_default(map.get("logins_by_role"), gojson::parse_string_list_map),
            max_duration: get("max_duration"),
            messages,
            extra: map
                .iter()
                .filter(|(k, _)| !OFFICIAL_KEYS.contains(&k.as_str()) && !LEGACY_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Encodes every official key (empty values included: on write, `""`
    /// deletes) plus the extra keys. JSON values are Go's bytes.
    pub fn encode(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("user", self.user.clone());
        put("roles", self.roles.join(","));
        put(
            "resources",
            if self.resources.is_empty() { String::new() } else { gojson::string_list(&self.resources) },
        );
        put("request_reason", self.request_reason.clone());
        put("reviews_count", if self.reviews_count == 0 { String::new() } else { self.reviews_count.to_string() });
        put("resolution", self.resolution.as_str().to_string());
        put("resolve_reason", self.resolve_reason.clone());
        put(
            "system_annotations",
            if self.system_annotations.is_empty() { String::new() } else { gojson::string_list_map(&self.system_annotations) },
        );
        put(
            "suggested_reviewers",
            if self.suggested_reviewers.is_empty() { String::new() } else { gojson::string_list(&self.suggested_reviewers) },
        );
        put(
            "logins_by_role",
            if self.logins_by_role.is_empty() { String::new() } else { gojson::string_list_map(&self.logins_by_role) },
        );
        put("max_duration", self.max_duration.clone());
        put(
            "messages",
            self.messages.iter().map(|m| format!("{}/{}", m.channel_id, m.message_id)).collect::<Vec<_>>().join(","),
        );
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        m
    }
}

/// What a [`PluginDataStore::modify`] callback decides.
#[allow(clippy::large_enum_variant)] // returned once per write
pub enum Change<T> {
    /// Write this record (compare-and-swap against what was read).
    Write(RequestData, T),
    /// Leave the stored data as it is.
    Keep(T),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("plugin data of {resource} kept changing under us ({attempts} compare-and-swap conflicts)")]
    Contended { resource: String, attempts: u32 },
    #[error("plugin data call for {resource} failed: {}", super::client::describe_status(status))]
    Rpc { resource: String, status: Status },
}

impl StoreError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Contended { .. } => true,
            Self::Rpc { status, .. } => !matches!(
                status.code(),
                Code::PermissionDenied | Code::InvalidArgument | Code::Unauthenticated
            ),
        }
    }
}

/// Compare-and-swap access to one plugin's data for one resource kind.
#[derive(Clone)]
pub struct PluginDataStore {
    client: Arc<TeleportClient>,
    plugin: String,
    kind: &'static str,
    max_attempts: u32,
}

impl PluginDataStore {
    pub fn new(client: Arc<TeleportClient>, plugin: impl Into<String>) -> Self {
        Self { client, plugin: plugin.into(), kind: ACCESS_REQUEST_KIND, max_attempts: 64 }
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    pub async fn load(&self, resource: &str) -> Result<Option<RequestData>, StoreError> {
        self.read_raw(resource).await.map(|m| m.map(|m| RequestData::decode(&m)))
    }

    async fn read_raw(&self, resource: &str) -> Result<Option<HashMap<String, String>>, StoreError> {
        self.client
            .get_plugin_data(self.kind, resource, &self.plugin)
            .await
            .map_err(|status| StoreError::Rpc { resource: resource.into(), status })
    }

    /// Every record of this plugin, in one call: resource → raw map.
    pub async fn load_all_raw(&self) -> Result<HashMap<String, HashMap<String, String>>, StoreError> {
        self.client
            .list_plugin_data(self.kind, &self.plugin)
            .await
            .map_err(|status| StoreError::Rpc { resource: "every access request".into(), status })
    }

    /// Raw stored map of this plugin's data for `resource`.
    pub async fn load_raw(&self, resource: &str) -> Result<Option<HashMap<String, String>>, StoreError> {
        self.read_raw(resource).await
    }

    /// Read-modify-write with compare-and-swap, retried on conflict with
    /// jittered backoff (1 ms to 1 s). `f` sees `None` when no data exists;
    /// writing then creates it only if nobody else did meanwhile.
    pub async fn modify<T>(
        &self,
        resource: &str,
        f: impl FnMut(Option<&RequestData>) -> Change<T>,
    ) -> Result<T, StoreError> {
        let current = self.read_raw(resource).await?;
        self.modify_known(resource, current, f).await.map(|(out, _)| out)
    }

    /// Like [`modify`](Self::modify), but starts from `known`, what the caller
    /// believes is stored (saving a read); a wrong belief costs one conflict.
    /// Returns the callback's value and what is stored afterwards.
    pub async fn modify_known<T>(
        &self,
        resource: &str,
        known: Option<HashMap<String, String>>,
        mut f: impl FnMut(Option<&RequestData>) -> Change<T>,
    ) -> Result<(T, Option<HashMap<String, String>>), StoreError> {
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_secs(1))
            .with_jitter()
            .without_max_times()
            .build();
        let mut raw = known;
        for attempt in 0..self.max_attempts {
            if attempt > 0 {
                raw = self.read_raw(resource).await?;
            }
            let current = raw.as_ref().map(RequestData::decode);
            let (next, out) = match f(current.as_ref()) {
                Change::Keep(out) => return Ok((out, raw)),
                Change::Write(next, out) => (next, out),
            };
            let (set, expect) = cas_maps(raw.as_ref(), &next);
            let mut stored = raw.clone().unwrap_or_default();
            for (k, v) in &set {
                if v.is_empty() {
                    stored.remove(k);
                } else {
                    stored.insert(k.clone(), v.clone());
                }
            }
            match self.client.update_plugin_data(self.kind, resource, &self.plugin, set, expect).await {
                Ok(()) => return Ok((out, (!stored.is_empty()).then_some(stored))),
                Err(s) if s.code() == Code::FailedPrecondition => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(status) => return Err(StoreError::Rpc { resource: resource.into(), status }),
            }
        }
        Err(StoreError::Contended { resource: resource.into(), attempts: self.max_attempts })
    }
}

/// The `set` and `expect` maps of a compare-and-swap from `old` to `new`.
///
/// `set` holds only the keys whose decoded value changed: a value we read and
/// did not change is left exactly as stored (another writer's bytes, a form
/// we read but would write differently, or one we could not read at all).
/// Keys we no longer carry are deleted; legacy keys are dropped once their
/// content moved into `messages`.
///
/// `expect` lists every official key and every key we read, with the value we
/// read (or `""` for absent): the server then refuses the write if anyone
/// changed any of them. With no stored data, all expected values are `""`,
/// which the server treats as "create only if absent".
pub fn cas_maps(
    old: Option<&HashMap<String, String>>,
    new: &RequestData,
) -> (HashMap<String, String>, HashMap<String, String>) {
    let encoded = new.encode();
    let mut expect: HashMap<String, String> = OFFICIAL_KEYS.iter().map(|k| (k.to_string(), String::new())).collect();
    let Some(old) = old else {
        for k in encoded.keys() {
            expect.entry(k.clone()).or_default();
        }
        return (encoded.into_iter().collect(), expect);
    };
    let before = RequestData::decode(old).encode();
    let mut set: HashMap<String, String> = encoded
        .iter()
        // Changed, or not stored under this key yet (`messages` decoded
        // from the legacy keys).
        .filter(|(k, v)| before.get(*k) != Some(*v) || (!v.is_empty() && !old.contains_key(*k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in old {
        expect.insert(k.clone(), v.clone());
        if !encoded.contains_key(k) {
            set.insert(k.clone(), String::new());
        }
    }
    for k in set.keys() {
        expect.entry(k.clone()).or_default();
    }
    (set, expect)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn decodes_the_official_encoding() {
        let m = map(&[
            ("user", "alice"),
            ("roles", "editor,auditor"),
            ("resources", r#"["node/web-1"]"#),
            ("request_reason", "deploy, now"),
            ("reviews_count", "2"),
            ("resolution", "APPROVED"),
            ("resolve_reason", "ok"),
            ("system_annotations", r#"{"team":["a"]}"#),
            ("logins_by_role", r#"{"editor":["root"]}"#),
            ("messages", "C1/1700000000.000100,D2/1700000000.000200"),
            ("tp_owner", "pod-a"),
        ]);
        let d = RequestData::decode(&m);
        assert_eq!(d.user, "alice");
        assert_eq!(d.roles, vec!["editor", "auditor"]);
        assert_eq!(d.resources, vec!["node/web-1"]);
        assert_eq!(d.reviews_count, 2);
        assert_eq!(d.resolution, Resolution::Approved);
        assert_eq!(d.system_annotations["team"], vec!["a"]);
        assert_eq!(d.logins_by_role["editor"], vec!["root"]);
        assert_eq!(
            d.messages,
            vec![
                MessageRef { channel_id: "C1".into(), message_id: "1700000000.000100".into() },
                MessageRef { channel_id: "D2".into(), message_id: "1700000000.000200".into() },
            ]
        );
        assert_eq!(d.extra.get("tp_owner").map(String::as_str), Some("pod-a"));
        // Re-encoding gives back the same non-empty values.
        let e = d.encode();
        for (k, v) in &m {
            assert_eq!(e.get(k), Some(v), "key {k}");
        }
    }

    #[test]
    fn reads_legacy_single_message_layouts() {
        let slack = RequestData::decode(&map(&[("channel_id", "C1"), ("timestamp", "123.4")]));
        assert_eq!(slack.messages, vec![MessageRef { channel_id: "C1".into(), message_id: "123.4".into() }]);
        let mm = RequestData::decode(&map(&[("channel_id", "ch"), ("postID", "p1")]));
        assert_eq!(mm.messages, vec![MessageRef { channel_id: "ch".into(), message_id: "p1".into() }]);
    }

    #[test]
    fn empty_values_encode_as_deletions_and_corrupt_json_is_tolerated() {
        let d = RequestData::default();
        let e = d.encode();
        assert_eq!(e["reviews_count"], "");
        assert_eq!(e["resources"], "");
        assert_eq!(e["messages"], "");
        let bad = RequestData::decode(&map(&[("resources", "not json"), ("reviews_count", "x")]));
        assert!(bad.resources.is_empty());
        assert_eq!(bad.reviews_count, 0);
    }

    #[test]
    fn a_role_without_logins_is_read_and_never_dropped() {
        let official = map(&[("user", "alice"), ("logins_by_role", r#"{"dev":["root"],"editor":null}"#)]);
        let d = RequestData::decode(&official);
        assert_eq!(d.logins_by_role["dev"], vec!["root"]);
        assert!(d.logins_by_role["editor"].is_empty());
        let mut next = d.clone();
        next.reviews_count = 1;
        let (set, expect) = cas_maps(Some(&official), &next);
        assert!(!set.contains_key("logins_by_role"), "unchanged: not rewritten");
        assert_eq!(expect["logins_by_role"], official["logins_by_role"]);
        // When we do write it, a role without logins is null, as the official plugin writes it.
        assert_eq!(d.encode()["logins_by_role"], official["logins_by_role"]);
    }

    #[test]
    fn only_changed_keys_are_set_and_json_is_written_as_go_writes_it() {
        // Stored in a form Go would not write (serde_json's): left alone until changed.
        let old = map(&[("user", "alice"), ("system_annotations", r#"{"url":["https://x/?a=1&b=2"]}"#), ("reviews_count", "1")]);
        let mut next = RequestData::decode(&old);
        next.reviews_count = 2;
        let (set, _) = cas_maps(Some(&old), &next);
        assert_eq!(set, map(&[("reviews_count", "2")]));
        next.system_annotations.insert("team".into(), vec!["<ops>".into()]);
        next.resources = vec!["/c/node/a&b".into()];
        let (set, _) = cas_maps(Some(&old), &next);
        assert_eq!(set["system_annotations"], r#"{"team":["\u003cops\u003e"],"url":["https://x/?a=1\u0026b=2"]}"#);
        assert_eq!(set["resources"], r#"["/c/node/a\u0026b"]"#);
        assert!(!set.contains_key("user"));
    }

    #[test]
    fn cas_create_expects_every_key_absent() {
        let new = RequestData { user: "alice".into(), ..Default::default() };
        let (set, expect) = cas_maps(None, &new);
        assert_eq!(set["user"], "alice");
        assert!(expect.values().all(String::is_empty));
        for k in OFFICIAL_KEYS {
            assert!(expect.contains_key(*k));
        }
    }

    #[test]
    fn cas_update_expects_what_was_read_and_deletes_dropped_keys() {
        let old = map(&[("user", "alice"), ("channel_id", "C1"), ("timestamp", "1.2")]);
        let mut new = RequestData::decode(&old);
        new.reviews_count = 1;
        let (set, expect) = cas_maps(Some(&old), &new);
        assert_eq!(expect["user"], "alice");
        assert_eq!(expect["channel_id"], "C1");
        assert_eq!(expect["reviews_count"], "");
        assert_eq!(set["reviews_count"], "1");
        assert_eq!(set["channel_id"], "");
        assert_eq!(set["messages"], "C1/1.2");
    }
}
