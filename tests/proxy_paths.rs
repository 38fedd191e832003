//! Every connection path to Auth over real TLS: direct, through a Proxy with
//! TLS routing, and through the WebSocket connection upgrade behind an L7
//! load balancer; path selection (`auto`, `proxy`, `direct`), identity
//! rotation through the Proxy, and the errors that name their cause.

#[path = "support/watch.rs"]
mod watch_support;
use watch_support::{RotatingWatch, collect_until, identity};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use teleport_plugin::app::{Extras, launch};
use teleport_plugin::chat::Chat;
use teleport_plugin::chat::console::ConsoleChat;
use teleport_plugin::config::{Config, Format};

use teleport_plugin::config::ConnectionMode;
use teleport_plugin::identity::{Identity, parse_identity_file};
use teleport_plugin_sim::proxy::{Front, ProxySim, ProxySimConfig};
use teleport_plugin_sim::teleport::{SimConfig, TeleportSim};
use teleport_plugin::teleport::plugin_data::{Change, PluginDataStore};
use teleport_plugin::teleport::route::alpn::{ProxyTarget, TlsRoutingDialer};
use teleport_plugin::teleport::route::tcp::Net;
use teleport_plugin::teleport::route::upgrade::ConnUpgradeDialer;
use teleport_plugin::teleport::route::{RouteError, RouteOptions, dialer_with, web};
use teleport_plugin::teleport::{ChannelOptions, Dialer, Feed, RequestData, StreamState, TeleportClient, Watcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use teleport_plugin_sim::access::AccessRequestExt;

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn auth() -> TeleportSim {
    init();
    TeleportSim::start(SimConfig::default()).await.expect("simulator starts")
}

async fn front(auth: &TeleportSim, front: Front, tls_routing: bool) -> ProxySim {
    let cfg = ProxySimConfig { front, tls_routing, ..ProxySimConfig::default() };
    ProxySim::start(auth, cfg).await.expect("proxy starts")
}

/// Route options trusting the front's web CA, without forward proxies and
/// without the environment's upgrade override.
fn opts(proxy: &ProxySim) -> RouteOptions {
    RouteOptions {
        web_cas: vec![proxy.web_ca()],
        net: Arc::new(Net::direct()),
        conn_upgrade: String::new(),
        timeout: Duration::from_secs(5),
    }
}

async fn connect(dialer: Arc<dyn Dialer>, id: Arc<Identity>) -> Arc<TeleportClient> {
    let (client, info) = TeleportClient::connect(dialer, id, ChannelOptions::default()).await.expect("connects");
    assert_eq!(info.cluster_name, "sim.example.com");
    Arc::new(client)
}

async fn connect_err(dialer: Arc<dyn Dialer>, id: Arc<Identity>) -> String {
    TeleportClient::connect(dialer, id, ChannelOptions::default()).await.err().expect("must fail").to_string()
}

/// Ping, a watch stream (INIT, then a Put and a Delete), and a plugin-data
/// write read back from the server, all over `client`.
async fn exercise(sim: &TeleportSim, client: Arc<TeleportClient>) {
    let info = client.ping().await.expect("ping");
    assert_eq!(info.server_version, "17.4.2");

    let (tx, mut rx) = mpsc::channel(256);
    let watcher = Watcher::new(client.clone(), tx);
    let mut state = watcher.state();
    let stop = CancellationToken::new();
    tokio::spawn(watcher.run(stop.clone()));
    collect_until(&mut rx, |f| matches!(f, Feed::Ready { .. })).await;
    collect_until(&mut rx, |f| matches!(f, Feed::CaughtUp { .. })).await;
    state.wait_for(|s| matches!(s, StreamState::Live { .. })).await.unwrap();

    let req = sim.request("alice@example.com", &["editor"], "through the proxy");
    collect_until(&mut rx, |f| matches!(f, Feed::Put(r) if r.id == req.id() && r.request_reason == "through the proxy"))
        .await;

    let store = PluginDataStore::new(client.clone(), "slack");
    let wrote = store
        .modify(req.id(), |cur| match cur {
            None => Change::Write(RequestData { user: "alice@example.com".into(), ..Default::default() }, true),
            Some(_) => Change::Keep(false),
        })
        .await
        .expect("plugin data write");
    assert!(wrote);
    assert_eq!(sim.plugin_data(req.id(), "slack").expect("stored")["user"], "alice@example.com");
    assert_eq!(store.load(req.id()).await.unwrap().unwrap().user, "alice@example.com");

    sim.expire(req.id());
    collect_until(&mut rx, |f| *f == Feed::Deleted(req.id().to_string())).await;
    stop.cancel();
}

// ---- (a) each path carries the whole client -----------------------------------

#[tokio::test]
async fn direct_path_connects_watches_and_writes() {
    let sim = auth().await;
    let dialer =
        dialer_with(&sim.addr().to_string(), ConnectionMode::Direct, &RouteOptions::from_env(vec![])).await.unwrap();
    assert!(dialer.describe().starts_with("direct to Auth"), "{}", dialer.describe());
    exercise(&sim, connect(dialer, identity(&sim)).await).await;
}

#[tokio::test]
async fn tls_routing_path_connects_watches_and_writes() {
    let sim = auth().await;
    let proxy = front(&sim, Front::Proxy, true).await;
    let dialer = dialer_with(&proxy.addr().to_string(), ConnectionMode::Proxy, &opts(&proxy)).await.unwrap();
    let path = dialer.describe();
    assert!(path.contains("TLS routing to the Auth of cluster sim.example.com") && !path.contains("upgrade"), "{path}");
    exercise(&sim, connect(dialer, identity(&sim)).await).await;
    let counts = proxy.counts();
    assert!(counts.auth_routes >= 1, "{counts:?}");
    assert_eq!(counts.upgrades, 0, "{counts:?}");
    assert_eq!(counts.find_requests, 1, "{counts:?}");
}

#[tokio::test]
async fn connection_upgrade_path_connects_watches_and_writes_and_answers_pings() {
    let sim = auth().await;
    let proxy = front(&sim, Front::L7LoadBalancer, true).await;
    let dialer = dialer_with(&proxy.addr().to_string(), ConnectionMode::Proxy, &opts(&proxy)).await.unwrap();
    let path = dialer.describe();
    assert!(path.contains("WebSocket connection upgrade"), "{path}");
    let client = connect(dialer, identity(&sim)).await;
    exercise(&sim, client.clone()).await;
    let counts = proxy.counts();
    assert!(counts.upgrades >= 1 && counts.auth_routes >= 1, "{counts:?}");
    // The front pings every 200 ms; the client answers each ping while idle.
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        while proxy.counts().pongs_received < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(answered.is_ok(), "{:?}", proxy.counts());
    // And the tunnel still works after idling.
    client.ping().await.expect("ping after idle");
}

#[tokio::test]
async fn forced_upgrade_works_against_the_proxy_itself() {
    let sim = auth().await;
    let proxy = front(&sim, Front::Proxy, true).await;
    let mut o = opts(&proxy);
    o.conn_upgrade = format!("{}=true", proxy.addr());
    let dialer = dialer_with(&proxy.addr().to_string(), ConnectionMode::Proxy, &o).await.unwrap();
    assert!(dialer.describe().contains("connection upgrade"), "{}", dialer.describe());
    exercise(&sim, connect(dialer, identity(&sim)).await).await;
    assert!(proxy.counts().upgrades >= 1);
}

// ---- (b) rotation through the Proxy ---------------------------------------------

async fn rotate_through(front_kind: Front) {
    let sim = auth().await;
    let proxy = front(&sim, front_kind, true).await;
    let dialer = dialer_with(&proxy.addr().to_string(), ConnectionMode::Proxy, &opts(&proxy)).await.unwrap();
    let first = identity(&sim);
    let c = connect(dialer, first.clone()).await;
    let stop = CancellationToken::new();
    let watch = RotatingWatch::start(c.clone(), first, &stop).await;
    let routes_before = proxy.counts().auth_routes;
    watch.rotate_mid_burst(&sim, 100).await;
    assert!(sim.wait_until(Duration::from_secs(5), |s| s.active_watchers() == 1).await);
    assert!(proxy.counts().auth_routes > routes_before, "the new identity dialled a new routed connection");
    // Calls now run on the rotated connection, through the Proxy.
    let mut data = HashMap::new();
    data.insert("k".to_string(), "v".to_string());
    let req = sim.request("bob", &["editor"], "");
    c.update_plugin_data("access_request", req.id(), "slack", data, HashMap::new()).await.unwrap();
    assert_eq!(sim.plugin_data(req.id(), "slack").unwrap()["k"], "v");
    stop.cancel();
}

#[tokio::test]
async fn rotation_through_tls_routing_is_make_before_break() {
    rotate_through(Front::Proxy).await;
}

#[tokio::test]
async fn rotation_through_the_connection_upgrade_is_make_before_break() {
    rotate_through(Front::L7LoadBalancer).await;
}

// ---- (b2) the front cuts every tunnel ---------------------------------------------

/// Every tunnel is cut at the front (a Proxy or load balancer restart): the
/// watcher re-dials through the same front, re-opens its stream and sees
/// what was created meanwhile; unary calls run on the new tunnel.
async fn tunnels_dropped_at(kind: Front) {
    let sim = auth().await;
    let proxy = front(&sim, kind, true).await;
    let dialer = dialer_with(&proxy.addr().to_string(), ConnectionMode::Proxy, &opts(&proxy)).await.unwrap();
    let client = connect(dialer, identity(&sim)).await;
    let (tx, mut rx) = mpsc::channel(256);
    let watcher = Watcher::new(client.clone(), tx);
    let stats = watcher.stats();
    let stop = CancellationToken::new();
    tokio::spawn(watcher.run(stop.clone()));
    collect_until(&mut rx, |f| matches!(f, Feed::CaughtUp { .. })).await;
    let routes = proxy.counts().auth_routes;
    proxy.drop_tunnels();
    let req = sim.request("alice@example.com", &["editor"], "created while the tunnel was down");
    // Listed by the catch-up of the new stream (or seen live on it).
    collect_until(&mut rx, |f| matches!(f, Feed::Put(r) | Feed::Listed(r) if r.id == req.id())).await;
    assert!(sim.wait_until(Duration::from_secs(10), |s| s.watch_inits().len() >= 2).await, "{kind:?}: stream re-opened");
    client.ping().await.expect("ping over the new tunnel");
    let c = proxy.counts();
    assert!(c.tunnels_dropped >= 1 && c.auth_routes > routes, "{kind:?}: {c:?}");
    if kind == Front::L7LoadBalancer {
        assert!(c.upgrades >= 2, "{kind:?}: upgraded again: {c:?}");
    }
    assert!(stats.reconnects.load(Ordering::Relaxed) >= 1, "{kind:?}: the watcher reconnected");
    stop.cancel();
}

#[tokio::test]
async fn dropped_tunnels_are_redialled_through_tls_routing() {
    tunnels_dropped_at(Front::Proxy).await;
}

#[tokio::test]
async fn dropped_tunnels_are_redialled_through_the_connection_upgrade() {
    tunnels_dropped_at(Front::L7LoadBalancer).await;
}

// ---- (c) auto picks the path ------------------------------------------------------

#[tokio::test]
async fn auto_picks_the_path_for_each_front() {
    let sim = auth().await;
    let routing = front(&sim, Front::Proxy, true).await;
    let l7 = front(&sim, Front::L7LoadBalancer, true).await;
    let id = identity(&sim);

    let d = dialer_with(&routing.addr().to_string(), ConnectionMode::Auto, &opts(&routing)).await.unwrap();
    assert!(d.describe().contains("TLS routing") && !d.describe().contains("upgrade"), "{}", d.describe());
    connect(d, id.clone()).await.ping().await.unwrap();

    let d = dialer_with(&l7.addr().to_string(), ConnectionMode::Auto, &opts(&l7)).await.unwrap();
    assert!(d.describe().contains("WebSocket connection upgrade"), "{}", d.describe());
    connect(d, id.clone()).await.ping().await.unwrap();

    // Auth itself answers no web API: direct, and the description says why.
    let d = dialer_with(&sim.addr().to_string(), ConnectionMode::Auto, &opts(&routing)).await.unwrap();
    let path = d.describe();
    assert!(path.starts_with("direct to Auth") && path.contains("is not a Teleport Proxy web address"), "{path}");
    connect(d, id.clone()).await.ping().await.unwrap();

    // Port 3025 is Auth's: chosen without contacting anything.
    let d = dialer_with("auth.invalid:3025", ConnectionMode::Auto, &opts(&routing)).await.unwrap();
    assert!(d.describe().contains("port 3025"), "{}", d.describe());

    // An environment override forces the upgrade off even behind the L7 front.
    let mut o = opts(&l7);
    o.conn_upgrade = "false".into();
    let d = dialer_with(&l7.addr().to_string(), ConnectionMode::Auto, &o).await.unwrap();
    assert!(!d.describe().contains("upgrade"), "{}", d.describe());
}

#[tokio::test]
async fn a_proxy_without_tls_routing_is_refused_plainly() {
    let sim = auth().await;
    let legacy = front(&sim, Front::Proxy, false).await;
    for mode in [ConnectionMode::Auto, ConnectionMode::Proxy] {
        let err = dialer_with(&legacy.addr().to_string(), mode, &opts(&legacy)).await.err().expect("refused");
        assert!(matches!(err, RouteError::NoTlsRouting { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("SSH reverse tunnel, which this plugin does not support"), "{msg}");
        assert!(msg.contains("host:3025") && msg.contains("multiplex"), "{msg}");
    }
}

#[tokio::test]
async fn proxy_mode_on_an_auth_address_says_it_is_not_a_proxy() {
    let sim = auth().await;
    let proxy = front(&sim, Front::Proxy, true).await;
    let err = dialer_with(&sim.addr().to_string(), ConnectionMode::Proxy, &opts(&proxy)).await.err().expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("does not answer as a Teleport Proxy"), "{msg}");
}

#[tokio::test]
async fn unreachable_address_is_an_error_in_auto_mode() {
    init();
    let o = RouteOptions {
        web_cas: vec![],
        net: Arc::new(Net::direct()),
        conn_upgrade: String::new(),
        timeout: Duration::from_secs(2),
    };
    let err = dialer_with("127.0.0.1:1", ConnectionMode::Auto, &o).await.err().expect("unreachable");
    assert!(matches!(err, RouteError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn untrusted_web_certificate_names_the_fix() {
    let sim = auth().await;
    let proxy = front(&sim, Front::Proxy, true).await;
    // Trust some other CA only (the system store may be empty in a container).
    let other = front(&sim, Front::Proxy, true).await;
    let mut o = opts(&proxy);
    o.web_cas = vec![other.web_ca()];
    let err = dialer_with(&proxy.addr().to_string(), ConnectionMode::Proxy, &o).await.err().expect("untrusted");
    let msg = err.to_string();
    assert!(msg.contains("web certificate is not trusted") && msg.contains("teleport.web_ca"), "{msg}");
}

// ---- (d) wrong cluster, wrong CA ----------------------------------------------------

#[tokio::test]
async fn a_cluster_the_proxy_does_not_have_is_named() {
    let sim = auth().await;
    let proxy = front(&sim, Front::Proxy, true).await;
    let target = ProxyTarget::new(proxy.addr().to_string(), "nope.example.com", Arc::new(Net::direct()));
    let msg = connect_err(Arc::new(TlsRoutingDialer { target: target.clone() }), identity(&sim)).await;
    assert!(msg.contains("the Proxy has no cluster named \"nope.example.com\""), "{msg}");
    assert!(proxy.counts().refused_routes >= 1);

    let l7 = front(&sim, Front::L7LoadBalancer, true).await;
    let web = web::client_config(&[l7.web_ca()], &[]).unwrap();
    let target = ProxyTarget::new(l7.addr().to_string(), "nope.example.com", Arc::new(Net::direct()));
    let msg = connect_err(Arc::new(ConnUpgradeDialer::new(target, &web)), identity(&sim)).await;
    assert!(msg.contains("the Proxy has no cluster named \"nope.example.com\""), "{msg}");
    assert!(l7.counts().refused_routes >= 1);
}

#[tokio::test]
async fn an_identity_from_another_cluster_is_named() {
    let sim = auth().await;
    let other = teleport_plugin_sim::pki::ClusterPki::new("other.example.com").unwrap();
    let issued = other.issue_identity("access-plugin", Duration::from_secs(600)).unwrap();
    let foreign = Arc::new(parse_identity_file(issued.identity_file.as_bytes()).unwrap());
    for kind in [Front::Proxy, Front::L7LoadBalancer] {
        let proxy = front(&sim, kind, true).await;
        let dialer = dialer_with(&proxy.addr().to_string(), ConnectionMode::Proxy, &opts(&proxy)).await.unwrap();
        let msg = connect_err(dialer, foreign.clone()).await;
        assert!(msg.contains("not signed by any CA in the identity"), "{kind:?}: {msg}");
    }
}

// ---- forward proxies, `check` and start-up -------------------------------------------

/// A forward proxy that only speaks HTTP CONNECT; counts its tunnels.
async fn connect_proxy() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let Some(target) = head.strip_prefix("CONNECT ").and_then(|r| r.split(' ').next()) else {
                    let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n").await;
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, tunnels)
}

#[tokio::test]
async fn every_proxy_path_goes_through_an_https_forward_proxy() {
    let sim = auth().await;
    for kind in [Front::Proxy, Front::L7LoadBalancer] {
        let proxy = front(&sim, kind, true).await;
        let (forward, tunnels) = connect_proxy().await;
        let mut o = opts(&proxy);
        o.net = Arc::new(Net::https_proxy(&format!("http://{forward}")));
        let dialer = dialer_with(&proxy.addr().to_string(), ConnectionMode::Auto, &o).await.unwrap();
        let discovery = tunnels.load(Ordering::SeqCst);
        // The reachability probe, /webapi/find and the upgrade test dial.
        assert_eq!(discovery, 3, "{kind:?}");
        let client = connect(dialer, identity(&sim)).await;
        client.ping().await.unwrap();
        assert!(tunnels.load(Ordering::SeqCst) > discovery, "{kind:?}: the Auth connection was tunnelled too");
        assert!(proxy.counts().auth_routes >= 1);
    }
}

/// A configuration for the console chat reaching Teleport at `addr`.
fn config_text(addr: SocketAddr, identity: &std::path::Path, web_ca: &std::path::Path, extra: &str) -> String {
    format!(
        "[teleport]\naddr = \"{addr}\"\nidentity = \"{}\"\nweb_ca = \"{}\"\n{extra}\n[http]\nlisten = \"\"\n\n[console]\n[role_to_recipients]\n\"*\" = \"#access\"\n",
        identity.display(),
        web_ca.display()
    )
}

struct Files {
    dir: tempfile::TempDir,
    identity: std::path::PathBuf,
    web_ca: std::path::PathBuf,
}

fn files(sim: &TeleportSim, fronts: &[&ProxySim]) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("identity");
    std::fs::write(&identity, sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap().identity_file)
        .unwrap();
    let web_ca = dir.path().join("web-ca.pem");
    std::fs::write(&web_ca, fronts.iter().map(|f| f.web_ca_pem()).collect::<String>()).unwrap();
    Files { dir, identity, web_ca }
}

async fn check(config: &str, dir: &std::path::Path) -> (bool, String) {
    let path = dir.join(format!("check-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, config).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_teleport-plugin"))
        .args(["check", "--config"])
        .arg(&path)
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("TELEPORT_TLS_ROUTING_CONN_UPGRADE")
        .output()
        .await
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn check_reports_the_path_auto_chose() {
    let sim = auth().await;
    let routing = front(&sim, Front::Proxy, true).await;
    let l7 = front(&sim, Front::L7LoadBalancer, true).await;
    let legacy = front(&sim, Front::Proxy, false).await;
    let f = files(&sim, &[&routing, &l7, &legacy]);

    let (ok, out) = check(&config_text(routing.addr(), &f.identity, &f.web_ca, ""), f.dir.path()).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "path: through the Proxy at {} (TLS routing to the Auth of cluster sim.example.com)",
            routing.addr()
        )),
        "{out}"
    );

    let (ok, out) = check(&config_text(l7.addr(), &f.identity, &f.web_ca, ""), f.dir.path()).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("(WebSocket connection upgrade, TLS routing to the Auth of cluster sim.example.com)"),
        "{out}"
    );

    let (ok, out) =
        check(&config_text(sim.addr(), &f.identity, &f.web_ca, "connection = \"direct\""), f.dir.path()).await;
    assert!(ok, "{out}");
    assert!(out.contains(&format!("path: direct to Auth at {}", sim.addr())), "{out}");

    let (ok, out) = check(&config_text(legacy.addr(), &f.identity, &f.web_ca, ""), f.dir.path()).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("✘ teleport") && out.contains("SSH reverse tunnel, which this plugin does not support"),
        "{out}"
    );
}

/// `auto` cannot ask a Proxy whose web certificate it does not trust whether
/// it is one, so it tries Auth directly, which fails on the same certificate:
/// the report leads with the untrusted web certificate and its fix, once.
#[tokio::test]
async fn check_in_auto_mode_blames_an_untrusted_web_certificate_first() {
    let sim = auth().await;
    for kind in [Front::Proxy, Front::L7LoadBalancer] {
        let proxy = front(&sim, kind, true).await;
        let unrelated = front(&sim, kind, true).await;
        // web_ca trusts another Proxy's CA only.
        let f = files(&sim, &[&unrelated]);
        let (ok, out) = check(&config_text(proxy.addr(), &f.identity, &f.web_ca, ""), f.dir.path()).await;
        assert!(!ok, "{out}");
        let report = out.lines().find(|l| l.contains("✘ teleport")).unwrap_or_else(|| panic!("{out}"));
        let detail = report.split_once("✘ teleport: ").map(|(_, d)| d).unwrap_or_default();
        assert!(
            detail.starts_with(&format!("the web certificate of {} is not trusted", proxy.addr())),
            "{kind:?}: {report}"
        );
        assert_eq!(report.matches("teleport.web_ca").count(), 1, "{kind:?}: {report}");
        assert!(!report.contains("another cluster"), "{kind:?}: {report}");
        assert_eq!(report.matches("not trusted").count(), 1, "{kind:?}: {report}");
    }
}

#[tokio::test]
async fn start_up_reaches_auth_through_the_configured_proxy() {
    start_up_through(Front::L7LoadBalancer, "WebSocket connection upgrade").await;
}

#[tokio::test]
async fn start_up_reaches_auth_through_tls_routing() {
    start_up_through(Front::Proxy, "TLS routing").await;
}

/// The whole plugin, configured with the front's address, posts a request.
async fn start_up_through(kind: Front, path: &str) {
    let sim = auth().await;
    let l7 = front(&sim, kind, true).await;
    let f = files(&sim, &[&l7]);
    let text = config_text(l7.addr(), &f.identity, &f.web_ca, "connection = \"proxy\"");
    let cfg = Config::parse(&text, Format::Toml, "test.toml").unwrap();
    let (console, out) = ConsoleChat::buffered();
    let running = launch(&cfg, vec![Arc::new(console) as Arc<dyn Chat>], Extras::default()).await.unwrap();
    assert!(running.path.contains(path), "{}", running.path);
    assert!(running.ready(Duration::from_secs(10)).await);

    let req = sim.request("alice@example.com", &["dev"], "via the load balancer");
    let posted = tokio::time::timeout(Duration::from_secs(10), async {
        while sim.plugin_data(req.id(), "console").is_none_or(|d| !d.contains_key("messages")) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(posted.is_ok(), "{}", String::from_utf8_lossy(&out.lock().unwrap()));
    assert!(String::from_utf8_lossy(&out.lock().unwrap()).contains(&format!("ID: {}", req.id())));
    if kind == Front::L7LoadBalancer {
        assert!(l7.counts().upgrades >= 1);
    }
    assert!(running.stop(Duration::from_secs(5)).await);
}
