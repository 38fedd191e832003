//! The simulated Kubernetes API server, exercised through the real kube client.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{
    DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchParams,
};
use kube::core::{Status, WatchEvent};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use teleport_plugin_sim::kube::{KubeSim, KubeSimOptions};

const WAIT: Duration = Duration::from_secs(5);

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "notify.accessrequests.dev",
    version = "v1alpha1",
    kind = "AccessRequestRoute",
    namespaced,
    status = "AccessRequestRouteStatus"
)]
struct AccessRequestRouteSpec {
    channel: String,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
struct AccessRequestRouteStatus {
    ready: bool,
    #[serde(default)]
    message: String,
}

fn secret(name: &str, token: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("app".into(), "notifier".into())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "token".into(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

fn token_of(s: &Secret) -> String {
    let data = s.data.as_ref().expect("secret has data");
    String::from_utf8(data["token"].0.clone()).expect("utf-8 token")
}

fn route(name: &str, channel: &str) -> AccessRequestRoute {
    let mut r = AccessRequestRoute::new(
        name,
        AccessRequestRouteSpec {
            channel: channel.into(),
            roles: vec!["admin".into()],
        },
    );
    r.status = Some(AccessRequestRouteStatus {
        ready: true,
        message: "set by the client".into(),
    });
    r
}

fn api_error(err: kube::Error) -> Box<Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

type Events<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;

/// The next watcher event, skipping (and counting) errors.
async fn next_event<K: Debug>(events: &mut Events<K>, errors: &mut usize) -> Event<K> {
    loop {
        let item = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("watcher event in time")
            .expect("watcher stream does not end");
        match item {
            Ok(event) => return event,
            Err(_) => *errors += 1,
        }
    }
}

/// Skips the (empty) initial list of a fresh watcher.
async fn expect_empty_init<K: Debug>(events: &mut Events<K>, errors: &mut usize) {
    assert!(matches!(next_event(events, errors).await, Event::Init));
    assert!(matches!(next_event(events, errors).await, Event::InitDone));
}

#[tokio::test]
async fn secret_crud_matches_apiserver_semantics() {
    let sim = KubeSim::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(sim.client());

    let created = secrets
        .create(&PostParams::default(), &secret("tls", "one"))
        .await
        .unwrap();
    assert_eq!(created.namespace().as_deref(), Some("default"));
    assert!(created.uid().is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        created.metadata.generation, None,
        "core Secrets carry no generation"
    );
    let rv1: u64 = created.resource_version().unwrap().parse().unwrap();
    assert_eq!(rv1, sim.resource_version());

    let dup = secrets
        .create(&PostParams::default(), &secret("tls", "two"))
        .await
        .unwrap_err();
    let dup = api_error(dup);
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));

    let got = secrets.get("tls").await.unwrap();
    assert_eq!(token_of(&got), "one");

    // Replace with the current resourceVersion succeeds and bumps it ...
    let mut next = got.clone();
    next.data = secret("tls", "two").data;
    let replaced = secrets
        .replace("tls", &PostParams::default(), &next)
        .await
        .unwrap();
    let rv2: u64 = replaced.resource_version().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    assert_eq!(replaced.uid(), created.uid());
    // ... while a stale one is a Conflict.
    let stale = secrets
        .replace("tls", &PostParams::default(), &got)
        .await
        .unwrap_err();
    let stale = api_error(stale);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));

    // Merge patch; stringData folds into data like the apiserver does.
    let patched = secrets
        .patch(
            "tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": "three"}, "metadata": {"labels": {"rotated": "yes"}}})),
        )
        .await
        .unwrap();
    assert_eq!(token_of(&patched), "three");
    assert!(patched.string_data.is_none());
    assert_eq!(
        patched.labels().get("rotated").map(String::as_str),
        Some("yes")
    );

    // A patch that changes nothing writes nothing.
    let rv_before = sim.resource_version();
    let same = secrets
        .patch(
            "tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"rotated": "yes"}}})),
        )
        .await
        .unwrap();
    assert_eq!(same.resource_version(), patched.resource_version());
    assert_eq!(sim.resource_version(), rv_before);

    // Server-side apply creates missing objects.
    let applied = secrets
        .patch(
            "other",
            &PatchParams::apply("sim-test"),
            &Patch::Apply(secret("other", "x")),
        )
        .await
        .unwrap();
    assert_eq!(token_of(&applied), "x");

    let selected = secrets
        .list(&ListParams::default().labels("rotated=yes"))
        .await
        .unwrap();
    assert_eq!(
        selected
            .items
            .iter()
            .map(|s| s.name_any())
            .collect::<Vec<_>>(),
        vec!["tls"]
    );
    let all = secrets.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);
    assert_eq!(
        all.metadata.resource_version,
        Some(sim.resource_version().to_string())
    );

    let deleted = secrets
        .delete("tls", &DeleteParams::default())
        .await
        .unwrap();
    assert!(deleted.is_right(), "Secret deletes answer with a Status");
    let missing = api_error(secrets.get("tls").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert!(secrets.get_opt("tls").await.unwrap().is_none());
    assert!(sim.get::<Secret>("default", "tls").is_none());
    assert_eq!(sim.request_count("create", "secrets"), 2);
    let never = sim
        .wait_until(Duration::from_millis(50), |s| s.resource_version() > 1000)
        .await;
    assert!(!never, "wait_until reports a timeout");
    assert_eq!(sim.request_count("patch", "secrets"), 3);
}

#[tokio::test]
async fn paginated_lists_are_consistent_snapshots() {
    let sim = KubeSim::start().await;
    let maps: Api<ConfigMap> = Api::namespaced(sim.client(), "ns1");
    for i in 0..5 {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("cm-{i}")),
                ..Default::default()
            },
            ..Default::default()
        };
        maps.create(&PostParams::default(), &cm).await.unwrap();
    }
    let first = maps.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().expect("continue token");

    // Writes after the first page do not show up in later pages.
    maps.delete("cm-3", &DeleteParams::default()).await.unwrap();
    sim.put_json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-9", "namespace": "ns1"}}))
        .unwrap();
    let rest = maps
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    let names: Vec<String> = rest.items.iter().map(|c| c.name_any()).collect();
    assert_eq!(names, vec!["cm-2", "cm-3", "cm-4"]);
    assert_eq!(
        rest.metadata.resource_version,
        first.metadata.resource_version
    );
    assert!(rest.metadata.continue_.is_none());

    // After compaction the old snapshot is gone: 410 Expired.
    sim.compact();
    let gone = api_error(
        maps.list(&ListParams::default().limit(10).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((gone.code, gone.reason.as_str()), (410, "Expired"));

    // Cluster-wide list and field selectors.
    let all: Api<ConfigMap> = Api::all(sim.client());
    let by_name = all
        .list(&ListParams::default().fields("metadata.name=cm-9"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let bad = api_error(
        all.list(&ListParams::default().fields("data.x=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.code, 400);
}

#[tokio::test]
async fn watcher_follows_one_secret_by_name() {
    let sim = KubeSim::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(sim.client());
    let mut errors = 0;
    let mut events: Events<Secret> = watcher(
        secrets.clone(),
        watcher::Config::default().fields("metadata.name=tls"),
    )
    .boxed();
    expect_empty_init(&mut events, &mut errors).await;
    assert!(
        sim.last_query("list", "secrets")
            .unwrap()
            .contains("fieldSelector=metadata.name%3Dtls")
    );

    // The watch opens from the list's resourceVersion, so these are not missed
    // even if written before it is established.
    secrets
        .create(&PostParams::default(), &secret("unrelated", "u"))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &secret("tls", "one"))
        .await
        .unwrap();
    match next_event(&mut events, &mut errors).await {
        Event::Apply(s) => assert_eq!((s.name_any(), token_of(&s)), ("tls".into(), "one".into())),
        other => panic!("expected Apply on create, got {other:?}"),
    }
    let watch = sim.last_request("watch", "secrets").unwrap();
    assert_eq!(watch.param("fieldSelector"), Some("metadata.name=tls"));
    assert_eq!(watch.param("allowWatchBookmarks"), Some("true"));
    assert_eq!(sim.open_watches(), 1);
    sim.patch::<Secret>(
        "default",
        "unrelated",
        &json!({"stringData": {"token": "u2"}}),
    )
    .unwrap();
    secrets
        .patch(
            "tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": "two"}})),
        )
        .await
        .unwrap();
    match next_event(&mut events, &mut errors).await {
        Event::Apply(s) => assert_eq!(token_of(&s), "two"),
        other => panic!("expected Apply on rotation, got {other:?}"),
    }
    secrets
        .delete("tls", &DeleteParams::default())
        .await
        .unwrap();
    match next_event(&mut events, &mut errors).await {
        Event::Delete(s) => {
            assert_eq!(s.name_any(), "tls");
            assert_eq!(
                s.resource_version(),
                Some(sim.resource_version().to_string())
            );
        }
        other => panic!("expected Delete, got {other:?}"),
    }
    assert_eq!(errors, 0);
}

#[tokio::test]
async fn watcher_relists_after_compaction_and_restart() {
    // No bookmarks in this window: the watcher's resourceVersion stays behind.
    let sim = KubeSim::start_with(KubeSimOptions {
        bookmark_interval: Duration::from_secs(3600),
    })
    .await;
    let secrets: Api<Secret> = Api::default_namespaced(sim.client());
    let mut errors = 0;
    let mut events: Events<Secret> = watcher(
        secrets.clone(),
        watcher::Config::default().fields("metadata.name=tls"),
    )
    .boxed();
    expect_empty_init(&mut events, &mut errors).await;
    secrets
        .create(&PostParams::default(), &secret("tls", "one"))
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut events, &mut errors).await,
        Event::Apply(_)
    ));

    // Writes the watcher does not see move the global resourceVersion on.
    for i in 0..3 {
        sim.put(&secret("other", &i.to_string())).unwrap();
    }
    sim.compact();
    sim.drop_watches();

    // Resuming from its old resourceVersion yields 410 Expired, so it re-lists.
    match next_event(&mut events, &mut errors).await {
        Event::Init => {}
        other => panic!("expected a relist, got {other:?}"),
    }
    match next_event(&mut events, &mut errors).await {
        Event::InitApply(s) => assert_eq!(token_of(&s), "one"),
        other => panic!("expected the relisted secret, got {other:?}"),
    }
    assert!(matches!(
        next_event(&mut events, &mut errors).await,
        Event::InitDone
    ));
    assert_eq!(errors, 1, "exactly the 410 Expired error");
    assert_eq!(sim.request_count("list", "secrets"), 2);

    secrets
        .patch(
            "tls",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": "two"}})),
        )
        .await
        .unwrap();
    match next_event(&mut events, &mut errors).await {
        Event::Apply(s) => assert_eq!(token_of(&s), "two"),
        other => panic!("expected Apply after recovery, got {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_keep_the_watcher_current() {
    let sim = KubeSim::start_with(KubeSimOptions {
        bookmark_interval: Duration::from_millis(50),
    })
    .await;
    let secrets: Api<Secret> = Api::default_namespaced(sim.client());

    // Raw watch: a BOOKMARK carries the resourceVersion the stream has reached.
    sim.put(&secret("other", "0")).unwrap();
    let mut raw = secrets
        .watch(&WatchParams::default().fields("metadata.name=tls"), "0")
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(WAIT, raw.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match first {
        WatchEvent::Bookmark(b) => {
            assert_eq!(
                b.metadata.resource_version,
                sim.resource_version().to_string()
            );
            assert_eq!(b.types.kind, "Secret");
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }

    let mut errors = 0;
    let mut events: Events<Secret> = watcher(
        secrets.clone(),
        watcher::Config::default().fields("metadata.name=tls"),
    )
    .boxed();
    expect_empty_init(&mut events, &mut errors).await;
    // Drive the watcher while unrelated writes and bookmarks flow.
    let driver = tokio::spawn(async move {
        let mut errors = 0;
        let event = next_event(&mut events, &mut errors).await;
        (event, errors)
    });
    for i in 1..4 {
        sim.put(&secret("other", &i.to_string())).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The watcher took its resourceVersion from a bookmark after those writes, so
    // it resumes after compaction without a relist.
    sim.compact();
    sim.drop_watches();
    let resumed = sim
        .wait_until(WAIT, |s| s.request_count("watch", "secrets") == 3)
        .await;
    assert!(resumed, "the watcher re-watches after the restart");
    sim.put(&secret("tls", "fresh")).unwrap();
    let (event, errors) = tokio::time::timeout(WAIT, driver).await.unwrap().unwrap();
    match event {
        Event::Apply(s) => assert_eq!(token_of(&s), "fresh"),
        other => panic!("expected Apply, got {other:?}"),
    }
    assert_eq!(errors, 0);
    assert_eq!(
        sim.request_count("list", "secrets"),
        1,
        "no relist was needed"
    );
    // The raw watch, the watcher's first watch and its resumed one.
    assert_eq!(sim.request_count("watch", "secrets"), 3);
    drop(raw);
}

/// The next raw watch event (`None` when the server closed the stream).
async fn next<K>(
    stream: &mut BoxStream<'static, kube::Result<WatchEvent<K>>>,
) -> Option<WatchEvent<K>> {
    tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("watch event in time")
        .expect("well-formed watch event")
}

#[tokio::test]
async fn raw_watch_semantics() {
    let sim = KubeSim::start().await;
    let secrets: Api<Secret> = Api::namespaced(sim.client(), "ns1");
    let a = secrets
        .create(&PostParams::default(), &secret("a", "1"))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &secret("b", "1"))
        .await
        .unwrap();
    let a_rv = a.resource_version().unwrap();

    // From a resourceVersion: the history after it is replayed.
    let mut from_a = secrets
        .watch(&WatchParams::default(), &a_rv)
        .await
        .unwrap()
        .boxed();
    match next(&mut from_a).await {
        Some(WatchEvent::Added(s)) => assert_eq!(s.name_any(), "b"),
        other => panic!("expected ADDED b, got {other:?}"),
    }

    // Label selectors: objects moving in or out of the selection are ADDED/DELETED.
    let mut selected = secrets
        .watch(
            &WatchParams::default().labels("tier=gold"),
            &sim.resource_version().to_string(),
        )
        .await
        .unwrap()
        .boxed();
    sim.patch::<Secret>(
        "ns1",
        "a",
        &json!({"metadata": {"labels": {"tier": "gold"}}}),
    )
    .unwrap();
    sim.patch::<Secret>("ns1", "a", &json!({"metadata": {"labels": {"tier": null}}}))
        .unwrap();
    assert!(matches!(
        next(&mut selected).await,
        Some(WatchEvent::Added(_))
    ));
    match next(&mut selected).await {
        Some(WatchEvent::Deleted(s)) => assert_eq!(
            s.resource_version(),
            Some(sim.resource_version().to_string())
        ),
        other => panic!("expected DELETED, got {other:?}"),
    }

    // After compaction, an old resourceVersion is answered with ERROR 410.
    sim.compact();
    let mut expired = secrets
        .watch(&WatchParams::default(), &a_rv)
        .await
        .unwrap()
        .boxed();
    match next(&mut expired).await {
        Some(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(status.message.contains("too old resource version"));
        }
        other => panic!("expected ERROR 410, got {other:?}"),
    }
    assert!(
        next(&mut expired).await.is_none(),
        "the stream closes after the error"
    );

    // timeoutSeconds closes the stream.
    let started = std::time::Instant::now();
    let mut short = secrets
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    let mut added = 0;
    while let Some(ev) = next(&mut short).await {
        match ev {
            WatchEvent::Added(_) => added += 1,
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        added, 2,
        "resourceVersion 0 starts with synthetic ADDED events"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn streaming_list_watcher_works() {
    let sim = KubeSim::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(sim.client());
    sim.put(&secret("tls", "one")).unwrap();
    let mut errors = 0;
    let mut events: Events<Secret> = watcher(
        secrets.clone(),
        watcher::Config::default().streaming_lists(),
    )
    .boxed();
    assert!(matches!(
        next_event(&mut events, &mut errors).await,
        Event::Init
    ));
    assert!(matches!(
        next_event(&mut events, &mut errors).await,
        Event::InitApply(_)
    ));
    assert!(matches!(
        next_event(&mut events, &mut errors).await,
        Event::InitDone
    ));
    let watch = sim.last_request("watch", "secrets").unwrap();
    assert_eq!(watch.param("sendInitialEvents"), Some("true"));
    assert_eq!(sim.request_count("list", "secrets"), 0);
    sim.patch::<Secret>("default", "tls", &json!({"stringData": {"token": "two"}}))
        .unwrap();
    match next_event(&mut events, &mut errors).await {
        Event::Apply(s) => assert_eq!(token_of(&s), "two"),
        other => panic!("expected Apply, got {other:?}"),
    }
    assert_eq!(errors, 0);
}

#[tokio::test]
async fn injected_failures_surface_as_api_errors() {
    let sim = KubeSim::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(sim.client());
    sim.put(&secret("tls", "one")).unwrap();

    sim.fail_next(
        1,
        Status::failure("etcd is down", "InternalError").with_code(500),
    );
    let err = api_error(secrets.get("tls").await.unwrap_err());
    assert_eq!((err.code, err.message.as_str()), (500, "etcd is down"));
    assert!(secrets.get("tls").await.is_ok());

    // kube retries 429s by itself.
    sim.fail_next_for(
        "get",
        "secrets",
        2,
        Status::failure("slow down", "TooManyRequests").with_code(429),
    );
    assert!(secrets.get("tls").await.is_ok());
    assert_eq!(sim.request_count("get", "secrets"), 5);

    // A failing initial list is retried by the watcher.
    sim.fail_next_for(
        "list",
        "secrets",
        2,
        Status::failure("boom", "InternalError").with_code(500),
    );
    let mut errors = 0;
    let mut events: Events<Secret> = watcher(secrets.clone(), watcher::Config::default()).boxed();
    let mut inits = 0;
    loop {
        match next_event(&mut events, &mut errors).await {
            Event::Init => inits += 1,
            Event::InitApply(s) => {
                assert_eq!(s.name_any(), "tls");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        (inits, errors),
        (3, 2),
        "each failed list restarts the initial list"
    );
    assert_eq!(sim.request_count("list", "secrets"), 3);
}

#[tokio::test]
async fn custom_resource_status_and_generation() {
    let sim = KubeSim::start().await;
    sim.register_resource::<AccessRequestRoute>(true);
    let routes: Api<AccessRequestRoute> = Api::namespaced(sim.client(), "teleport");

    let mut errors = 0;
    let mut events: Events<AccessRequestRoute> =
        watcher(routes.clone(), watcher::Config::default()).boxed();
    expect_empty_init(&mut events, &mut errors).await;

    let created = routes
        .create(&PostParams::default(), &route("ops", "#ops"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.status.is_none(),
        "status is ignored on create with a status subresource"
    );
    match next_event(&mut events, &mut errors).await {
        Event::Apply(r) => assert_eq!(r.spec.channel, "#ops"),
        other => panic!("expected Apply, got {other:?}"),
    }

    let listed = routes.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].spec.roles, vec!["admin".to_string()]);

    // Status writes change only status and never bump generation.
    let status = json!({
        "status": {"ready": true, "message": "posted"},
        "spec": {"channel": "#ignored"},
    });
    let with_status = routes
        .patch_status("ops", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(
        with_status.status,
        Some(AccessRequestRouteStatus {
            ready: true,
            message: "posted".into()
        })
    );
    assert_eq!(with_status.spec.channel, "#ops");
    assert_eq!(with_status.metadata.generation, Some(1));
    assert_ne!(with_status.resource_version(), created.resource_version());
    assert_eq!(sim.request_count("patch", "accessrequestroutes/status"), 1);
    match next_event(&mut events, &mut errors).await {
        Event::Apply(r) => assert!(r.status.is_some_and(|s| s.ready)),
        other => panic!("expected Apply for the status change, got {other:?}"),
    }

    // Spec changes bump generation; status sent to the main resource is ignored.
    let spec_change = json!({"spec": {"channel": "#sec"}, "status": {"ready": false}});
    let changed = routes
        .patch("ops", &PatchParams::default(), &Patch::Merge(&spec_change))
        .await
        .unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    assert!(changed.status.as_ref().is_some_and(|s| s.ready));
    assert!(matches!(
        next_event(&mut events, &mut errors).await,
        Event::Apply(_)
    ));

    // Custom resources need a resourceVersion on replace.
    let mut unversioned = changed.clone();
    unversioned.metadata.resource_version = None;
    let invalid = api_error(
        routes
            .replace("ops", &PostParams::default(), &unversioned)
            .await
            .unwrap_err(),
    );
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));

    // Deleting a custom resource answers with the object.
    let deleted = routes
        .delete("ops", &DeleteParams::default())
        .await
        .unwrap();
    assert!(deleted.is_left());
    match next_event(&mut events, &mut errors).await {
        Event::Delete(r) => assert_eq!(r.name_any(), "ops"),
        other => panic!("expected Delete, got {other:?}"),
    }
    assert_eq!(errors, 0);
}

#[tokio::test]
async fn finalizers_delay_deletion() {
    let sim = KubeSim::start().await;
    sim.register_crd(
        "notify.accessrequests.dev",
        "v1alpha1",
        "accessrequestroutes",
        "AccessRequestRoute",
        true,
        true,
    );
    let routes: Api<AccessRequestRoute> = Api::namespaced(sim.client(), "teleport");
    let mut r = route("ops", "#ops");
    r.metadata.finalizers = Some(vec!["notify.accessrequests.dev/cleanup".into()]);
    routes.create(&PostParams::default(), &r).await.unwrap();

    let pending = routes
        .delete("ops", &DeleteParams::default())
        .await
        .unwrap();
    let marked = pending.left().expect("object while finalizers are pending");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(routes.get_opt("ops").await.unwrap().is_some());

    routes
        .patch(
            "ops",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(routes.get_opt("ops").await.unwrap().is_none());
}
