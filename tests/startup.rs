//! The `teleport-plugin` binary while its dependencies come up: a missing
//! identity Secret, Auth or a chat API unreachable at start are waited for
//! (not ready, `/readyz` says why, one log line per wait), a configuration
//! error still ends the start at once with the fix.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Env, eventually};
use serde_json::json;
use teleport_plugin_sim::chat::{ChatSim, SimChannel, SlackSim, SlackSimConfig};
use teleport_plugin_sim::kube::KubeSim;

const BIN: &str = env!("CARGO_BIN_EXE_teleport-plugin");
const NS: &str = "teleport";
const SECRET: &str = "plugin-identity";

/// The binary, running, with its stderr collected as it is written.
struct Plugin {
    child: Child,
    log: Arc<Mutex<String>>,
    started: Instant,
}

impl Plugin {
    fn start(config: &str, env: &[(&str, String)]) -> Plugin {
        let mut child = Command::new(BIN)
            .args(["start", "--config", config])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Plugin { child, log, started: Instant::now() }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn lines_with(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// The probes' address, from the log line that announces them.
    async fn http(&self) -> String {
        let found = eventually(Duration::from_secs(20), || self.log().contains("serving /healthz")).await;
        assert!(found, "the probes are served before the dependencies are up:\n{}", self.log());
        let log = self.log();
        let line = log.lines().find(|l| l.contains("serving /healthz")).unwrap();
        let addr = line.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap();
        format!("http://{addr}")
    }

    fn exited(&mut self) -> Option<i32> {
        self.child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1))
    }

    /// SIGTERM, then the exit code.
    async fn stop(mut self) -> i32 {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let code = tokio::task::spawn_blocking(move || self.child.wait().unwrap().code().unwrap_or(-1));
        tokio::time::timeout(Duration::from_secs(20), code).await.expect("exits after SIGTERM").unwrap()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

async fn ready_within(base: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if get(&format!("{base}/readyz")).await.0 == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn write(env: &Env, name: &str, text: &str) -> String {
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn console_config(env: &Env) -> String {
    env.config_text("[console]\n[role_to_recipients]\n\"*\" = \"#a\"\n")
        .replace("listen = \"\"", "listen = \"127.0.0.1:0\"")
}

/// A kubeconfig for the Kubernetes simulator (plain HTTP, no credentials).
fn kubeconfig(env: &Env, kube: &KubeSim) -> String {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {}\nusers:\n- name: plugin\n  user: {{}}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: plugin\n    namespace: {NS}\ncurrent-context: sim\n",
        kube.base_url()
    );
    write(env, "kubeconfig", &text)
}

/// tbot writes the Secret 20 s after the plugin started: until then the
/// plugin runs, is not ready and says why; it is ready as soon as the
/// Secret is there.
#[tokio::test]
async fn waits_for_an_identity_secret_created_20s_after_start() {
    let env = Env::new().await;
    let kube = KubeSim::start().await;
    let cfg = format!(
        "[teleport]\naddr = \"{}\"\nidentity_secret = {{ name = \"{SECRET}\", namespace = \"{NS}\" }}\n[http]\nlisten = \"127.0.0.1:0\"\n[console]\n[role_to_recipients]\n\"*\" = \"#a\"\n",
        env.sim.addr()
    );
    let path = write(&env, "c.toml", &cfg);
    let mut plugin = Plugin::start(&path, &[("KUBECONFIG", kubeconfig(&env, &kube))]);
    let base = plugin.http().await;
    let waiting = eventually(Duration::from_secs(10), || plugin.log().contains("waiting for the identity Secret")).await;
    assert!(waiting, "{}", plugin.log());
    let (code, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(&format!("waiting for the identity Secret {NS}/{SECRET}")) && body.contains("not found"), "{body}");
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200, "waiting is not a liveness failure");

    tokio::time::sleep(Duration::from_secs(20).saturating_sub(plugin.started.elapsed())).await;
    assert_eq!(plugin.exited(), None, "still running after 20 s without its Secret:\n{}", plugin.log());
    assert_eq!(get(&format!("{base}/readyz")).await.0, 503);
    let identity = env.sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap();
    kube.create_json(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NS},
        "data": {"identity": base64::engine::general_purpose::STANDARD.encode(identity.identity_file)}
    }))
    .unwrap();
    let created = Instant::now();
    assert!(ready_within(&base, Duration::from_secs(10)).await, "ready once the Secret exists:\n{}", plugin.log());
    assert!(created.elapsed() < Duration::from_secs(5), "ready {:?} after the Secret appeared", created.elapsed());
    assert_eq!(plugin.lines_with("waiting for the identity Secret"), 1, "one line per state change:\n{}", plugin.log());
    assert_eq!(plugin.lines_with("is available"), 1, "{}", plugin.log());
    assert_eq!(plugin.stop().await, 0);
}

/// Auth refusing connections at start: not ready with the reason, then
/// ready by itself once Auth answers.
#[tokio::test]
async fn waits_for_auth_unreachable_at_start() {
    let env = Env::new().await;
    env.sim.refuse_connections_for(Duration::from_secs(6));
    let path = write(&env, "c.toml", &console_config(&env));
    let mut plugin = Plugin::start(&path, &[]);
    let base = plugin.http().await;
    let waiting = eventually(Duration::from_secs(5), || plugin.log().contains("waiting for Teleport Auth")).await;
    assert!(waiting, "{}", plugin.log());
    let (code, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(code, 503, "{body}");
    // The simulator refuses by closing each accepted connection, so the
    // reason is the handshake cut short.
    assert!(body.contains("waiting for Teleport Auth (direct to Auth at") && body.contains("tls handshake eof"), "{body}");
    assert!(ready_within(&base, Duration::from_secs(20)).await, "{}", plugin.log());
    assert_eq!(plugin.exited(), None);
    assert_eq!(plugin.lines_with("waiting for Teleport Auth"), 1, "{}", plugin.log());
    assert_eq!(plugin.stop().await, 0);
}

/// `teleport.addr` is a Proxy that is not up yet (nothing listens): asking
/// it which path it offers is waited for, then the path is chosen and the
/// plugin becomes ready by itself.
#[tokio::test]
async fn waits_for_a_proxy_not_up_yet_at_start() {
    use teleport_plugin_sim::proxy::{ProxySim, ProxySimConfig};
    let env = Env::new().await;
    // A free port, closed again: connections to it are refused for now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let web_ca = env.dir.path().join("web-ca.pem");
    std::fs::write(&web_ca, env.sim.pki().host_ca_pem()).unwrap();
    let cfg = console_config(&env)
        .replace(&format!("addr = \"{}\"", env.sim.addr()), &format!("addr = \"{addr}\"\nconnection = \"proxy\"\nweb_ca = \"{}\"", web_ca.display()));
    let path = write(&env, "c.toml", &cfg);
    let mut plugin = Plugin::start(&path, &[("NO_PROXY", "127.0.0.1".into())]);
    let base = plugin.http().await;
    let what = format!("waiting for Teleport at {addr}");
    assert!(eventually(Duration::from_secs(10), || plugin.log().contains(&what)).await, "{}", plugin.log());
    let (code, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(&what), "{body}");

    // The Proxy comes up; its web CA is what the plugin trusts (read again
    // on every attempt).
    let proxy = ProxySim::start(&env.sim, ProxySimConfig { bind: addr, ..ProxySimConfig::default() }).await.unwrap();
    std::fs::write(&web_ca, proxy.web_ca_pem()).unwrap();
    assert!(ready_within(&base, Duration::from_secs(20)).await, "{}", plugin.log());
    assert_eq!(plugin.exited(), None);
    assert_eq!(plugin.lines_with(&what), 1, "{}", plugin.log());
    assert!(plugin.log().contains("TLS routing"), "the Proxy path was chosen:\n{}", plugin.log());
    assert_eq!(plugin.stop().await, 0);
}

/// The chat API answering 503 at start: not ready, then ready.
#[tokio::test]
async fn waits_for_the_chat_api_unreachable_at_start() {
    let env = Env::new().await;
    let slack = SlackSim::start(SlackSimConfig::default().with_channel(SimChannel::new("C0ACCESS01", "access"))).await;
    slack.core().fail_next(100_000, 503, Some("auth.test"));
    let cfg = env
        .config_text(&format!(
            "[slack]\ntoken = \"xoxb-sim-token\"\napi_url = \"{}\"\n[role_to_recipients]\n\"*\" = \"C0ACCESS01\"\n",
            slack.base_url()
        ))
        .replace("listen = \"\"", "listen = \"127.0.0.1:0\"");
    let path = write(&env, "c.toml", &cfg);
    let mut plugin = Plugin::start(&path, &[]);
    let base = plugin.http().await;
    assert!(eventually(Duration::from_secs(10), || plugin.log().contains("waiting for the slack API")).await, "{}", plugin.log());
    let (code, body) = get(&format!("{base}/readyz")).await;
    assert_eq!((code, body.contains("waiting for the slack API")), (503, true), "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(plugin.exited(), None, "{}", plugin.log());
    slack.core().clear_faults();
    assert!(ready_within(&base, Duration::from_secs(15)).await, "{}", plugin.log());
    assert_eq!(plugin.lines_with("waiting for the slack API"), 1, "{}", plugin.log());
    assert_eq!(plugin.stop().await, 0);
}

/// Configuration errors still end the start at once, naming the fix: a
/// rejected chat token, an identity for another cluster, an unreadable
/// token file.
#[tokio::test]
async fn configuration_errors_still_fail_fast() {
    let env = Env::new().await;
    let slack = SlackSim::start(SlackSimConfig::default().with_channel(SimChannel::new("C0ACCESS01", "access"))).await;
    let slack_cfg = |token: &str| {
        env.config_text(&format!(
            "[slack]\ntoken = \"{token}\"\napi_url = \"{}\"\n[role_to_recipients]\n\"*\" = \"C0ACCESS01\"\n",
            slack.base_url()
        ))
    };
    let exits = |path: String| async move {
        let out = tokio::task::spawn_blocking(move || Command::new(BIN).args(["start", "--config", &path]).output().unwrap());
        let out = tokio::time::timeout(Duration::from_secs(20), out).await.expect("fails fast").unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };

    let (code, err) = exits(write(&env, "token.toml", &slack_cfg("xoxb-wrong"))).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("slack API health check failed") && err.contains("token"), "{err}");

    let missing = env.dir.path().join("no-such-token");
    let (code, err) = exits(write(&env, "file.toml", &slack_cfg(&missing.display().to_string()))).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("slack.token") && err.contains("no-such-token"), "{err}");

    let other = teleport_plugin_sim::pki::ClusterPki::new("other.example.com").unwrap();
    std::fs::write(&env.identity_path, other.issue_identity("p", Duration::from_secs(600)).unwrap().identity_file).unwrap();
    let (code, err) = exits(write(&env, "ca.toml", &slack_cfg("xoxb-sim-token"))).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not signed by any CA in the identity") && err.contains("another cluster"), "{err}");
}
