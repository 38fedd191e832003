//! Keeps the route table in step with the `AccessRequestRoute` resources of
//! one namespace, and reports on each resource in its status (observed
//! generation and a Ready condition with the reason when a rule is invalid).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;

use super::next_or_stop;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::access::{KubeAccess, WatchAccess, forbidden};
use super::crd::{AccessRequestRoute, AccessRequestRouteStatus, GROUP, RouteCondition};
use super::routes::{RouteTable, Verdict};
use crate::metrics::{Metrics, SourceLabel};

/// Watches the resources until `stop`; rebuilds the table on every change.
pub async fn run(
    client: Client,
    namespace: String,
    table: Arc<RouteTable>,
    metrics: Arc<Metrics>,
    access: Arc<KubeAccess>,
    stop: CancellationToken,
) {
    let api: Api<AccessRequestRoute> = Api::namespaced(client, &namespace);
    let mut known: BTreeMap<String, AccessRequestRoute> = BTreeMap::new();
    let mut initial: BTreeMap<String, AccessRequestRoute> = BTreeMap::new();
    let what = format!("accessrequestroutes.{GROUP} in namespace {namespace}");
    let permissions = Arc::new(WatchAccess { api: api.clone(), fields: None, what, access: access.clone() });
    permissions.clone().spawn_rechecks(stop.clone());
    let status_what = format!("accessrequestroutes/status in namespace {namespace}");
    let writer = StatusWriter { api: &api, access: &access, what: &status_what };
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).default_backoff().boxed();
    loop {
        let Some(ev) = next_or_stop(&mut events, &stop).await else { return };
        permissions.observe(&ev);
        match ev {
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(r)) => {
                initial.insert(r.name_any(), r);
            }
            Ok(Event::InitDone) => {
                known = std::mem::take(&mut initial);
                apply(&writer, &known, &table, &metrics).await;
            }
            Ok(Event::Apply(r)) => {
                known.insert(r.name_any(), r);
                apply(&writer, &known, &table, &metrics).await;
            }
            Ok(Event::Delete(r)) => {
                known.remove(&r.name_any());
                apply(&writer, &known, &table, &metrics).await;
            }
            Err(e) => warn!(namespace = %namespace, error = %e, "watching AccessRequestRoute resources failed; retrying"),
        }
    }
}

/// Writes statuses, keeping the `patch` permission's state for readiness.
struct StatusWriter<'a> {
    api: &'a Api<AccessRequestRoute>,
    access: &'a KubeAccess,
    what: &'a str,
}

/// Loads `known` into the table and brings each resource's status up to date.
async fn apply(
    writer: &StatusWriter<'_>,
    known: &BTreeMap<String, AccessRequestRoute>,
    table: &RouteTable,
    metrics: &Metrics,
) {
    let resources: Vec<_> = known.values().cloned().collect();
    let verdicts = table.load(&resources);
    metrics.routes.get_or_create(&SourceLabel { source: "access_request_routes".into() }).set(table.len() as i64);
    for r in &resources {
        let name = r.name_any();
        let Some(verdict) = verdicts.get(&name) else { continue };
        let desired = status_for(r, verdict);
        if r.status.as_ref() == Some(&desired) {
            continue;
        }
        if verdict.valid {
            info!(route = %name, "{}", verdict.message);
        } else {
            warn!(route = %name, problems = %verdict.message, "AccessRequestRoute is invalid and ignored");
        }
        let patch = serde_json::json!({ "status": desired });
        match writer.api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => writer.access.allowed("patch", writer.what),
            Err(e) => match forbidden(&e) {
                Some(status) => writer.access.denied("patch", writer.what, &status.message),
                None => warn!(route = %name, error = %e, "cannot write the AccessRequestRoute status"),
            },
        }
    }
}

/// The status a resource should have for `verdict`, keeping the transition
/// time when the condition did not change.
pub fn status_for(r: &AccessRequestRoute, verdict: &Verdict) -> AccessRequestRouteStatus {
    let (status, reason) = if verdict.valid { ("True", "Valid") } else { ("False", "InvalidRule") };
    let generation = r.metadata.generation;
    let previous = r.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let unchanged = previous.is_some_and(|c| c.status == status && c.reason == reason && c.message == verdict.message);
    let last_transition_time = match previous {
        Some(c) if unchanged => c.last_transition_time.clone(),
        _ => Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()),
    };
    AccessRequestRouteStatus {
        observed_generation: generation,
        conditions: vec![RouteCondition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: verdict.message.clone(),
            last_transition_time,
            observed_generation: generation,
        }],
    }
}
