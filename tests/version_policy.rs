//! Auth's client version policy (Auth refuses clients older than its
//! previous major release) against the plugin: the real client and
//! `teleport-plugin check` work with every Auth release in the tested range,
//! with the policy on, and say what to do when Auth refuses them anyway.

#[path = "support/watch.rs"]
#[allow(dead_code)]
mod watch_support;
use watch_support::{collect_until, identity};

use std::sync::Arc;
use std::time::Duration;

use teleport_plugin::teleport::client::{ClientError, TESTED_SERVER_MAJORS};
use teleport_plugin::teleport::connect::open_channel;
use teleport_plugin::teleport::plugin_data::{Change, PluginDataStore};
use teleport_plugin::teleport::{ChannelOptions, DirectDialer, Feed, RequestData, TeleportClient, Watcher};
use teleport_plugin_proto::proto::auth_service_client::AuthServiceClient;
use teleport_plugin_proto::{proto, types};
use teleport_plugin_sim::access::AccessRequestExt;
use teleport_plugin_sim::teleport::{SimConfig, TeleportSim};
use teleport_plugin_sim::version_policy::Refusal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_teleport-plugin");

/// One release of each major in the tested range.
const RELEASES: &[&str] = &["17.4.2", "18.2.1", "19.0.3", "20.1.0"];

async fn auth(version: &str, allow_old_clients: bool) -> TeleportSim {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = SimConfig { server_version: version.into(), allow_old_clients, ..SimConfig::default() };
    TeleportSim::start(cfg).await.expect("simulator starts")
}

async fn connect(sim: &TeleportSim) -> Result<Arc<TeleportClient>, ClientError> {
    let dialer = Arc::new(DirectDialer { addr: sim.addr().to_string() });
    TeleportClient::connect(dialer, identity(sim), ChannelOptions::default()).await.map(|(c, _)| Arc::new(c))
}

/// A raw Auth client announcing `version`, as another Teleport client would.
async fn raw_ping(sim: &TeleportSim, version: &str) -> Result<(), tonic::Status> {
    let dialer = Arc::new(DirectDialer { addr: sim.addr().to_string() });
    let channel = open_channel(dialer, &identity(sim), &ChannelOptions::default()).await.expect("channel");
    let mut auth = AuthServiceClient::new(channel);
    let mut req = tonic::Request::new(proto::PingRequest {});
    req.metadata_mut().insert("version", version.parse().unwrap());
    auth.ping(req).await?;
    let mut watch = tonic::Request::new(proto::Watch {
        kinds: vec![types::WatchKind { kind: "access_request".into(), ..Default::default() }],
        allow_partial_success: true,
    });
    watch.metadata_mut().insert("version", version.parse().unwrap());
    auth.watch_events(watch).await?;
    Ok(())
}

#[tokio::test]
async fn the_simulated_auth_refuses_old_clients_on_every_call_unless_told_not_to() {
    let sim = auth("20.1.0", false).await;
    let err = raw_ping(&sim, "18.9.9").await.expect_err("a v18 client is refused by v20");
    // The connection is closed as the status is sent: either may arrive.
    assert!(
        matches!(err.code(), tonic::Code::PermissionDenied | tonic::Code::Unavailable | tonic::Code::Unknown),
        "{err:?}"
    );
    assert!(matches!(&sim.version_refusals()[..], [Refusal::TooOld { version, minimum }] if version == "18.9.9" && minimum == "19.0.0-aa"));
    raw_ping(&sim, "19.0.0-alpha.1").await.expect("a pre-release of the previous major passes");
    raw_ping(&sim, "21.0.0").await.expect("newer clients pass");
    assert!(raw_ping(&sim, "v20.1.0").await.is_err(), "a leading v does not parse");

    let lenient = auth("20.1.0", true).await;
    raw_ping(&lenient, "1.0.0").await.expect("TELEPORT_UNSTABLE_ALLOW_OLD_CLIENTS=yes lets old clients in");
    assert!(lenient.version_refusals().is_empty());
}

#[tokio::test]
async fn the_client_works_with_every_release_in_the_tested_range() {
    for release in RELEASES {
        let major: u64 = release.split('.').next().unwrap().parse().unwrap();
        assert!(TESTED_SERVER_MAJORS.contains(&major), "{release} is in the tested range");
        let sim = auth(release, false).await;
        let client = connect(&sim).await.unwrap_or_else(|e| panic!("Auth {release}: {e}"));
        assert_eq!(client.ping().await.expect("ping").server_version, *release);

        let (tx, mut rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        tokio::spawn(Watcher::new(client.clone(), tx).run(stop.clone()));
        collect_until(&mut rx, |f| matches!(f, Feed::CaughtUp { .. })).await;
        let req = sim.request("alice@example.com", &["editor"], "");
        collect_until(&mut rx, |f| matches!(f, Feed::Put(r) if r.id == req.id())).await;
        stop.cancel();

        let store = PluginDataStore::new(client.clone(), "slack");
        store
            .modify(req.id(), |_| Change::Write(RequestData { user: "alice@example.com".into(), ..Default::default() }, ()))
            .await
            .unwrap_or_else(|e| panic!("Auth {release}: {e}"));
        assert!(client.list_access_requests().await.is_ok());
        assert!(client.list_monitoring_rules("slack").await.is_ok());
        assert!(sim.version_refusals().is_empty(), "Auth {release} refused: {:?}", sim.version_refusals());
    }
}

async fn check(sim: &TeleportSim) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("identity");
    std::fs::write(&identity, sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap().identity_file).unwrap();
    let config = dir.path().join("check.toml");
    std::fs::write(
        &config,
        format!(
            "[teleport]\naddr = \"{}\"\nidentity = \"{}\"\n[http]\nlisten = \"\"\n[console]\n[role_to_recipients]\n\"*\" = \"#a\"\n",
            sim.addr(),
            identity.display()
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(BIN).args(["check", "--config"]).arg(&config).output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn check_reports_the_server_version_and_warns_outside_the_tested_range() {
    for release in RELEASES {
        let sim = auth(release, false).await;
        let (ok, out) = check(&sim).await;
        assert!(ok, "Auth {release}: {out}");
        assert!(out.contains(&format!("server version {release}")), "{out}");
        assert!(!out.contains("outside the range"), "{out}");
    }
    for (release, why) in [("16.5.0", "older"), ("21.0.0", "newer")] {
        let sim = auth(release, false).await;
        let (ok, out) = check(&sim).await;
        assert!(ok, "a warning only: {out}");
        let warning = format!(
            "! Teleport {release} is {why} than the releases this plugin is tested with ({}–{})",
            TESTED_SERVER_MAJORS.start(),
            TESTED_SERVER_MAJORS.end()
        );
        assert!(out.contains(&warning), "{out}");
    }
}

#[tokio::test]
async fn a_refused_client_version_is_explained_with_the_fix() {
    let sim = auth("19.0.3", false).await;
    // What Auth answers when its policy refuses the client.
    sim.fail_next("Ping", tonic::Status::permission_denied("client version is unsupported"));
    let err = connect(&sim).await.err().expect("refused");
    assert!(matches!(err, ClientError::VersionRefused { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("Teleport Auth refused this plugin's client version"), "{msg}");
    assert!(msg.contains("TELEPORT_UNSTABLE_ALLOW_OLD_CLIENTS=yes"), "{msg}");
}
