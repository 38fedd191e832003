//! Shared set-up for end-to-end tests: a Teleport simulator, an identity file
//! for it, and a configuration pointing at both.
#![allow(dead_code)]

pub mod chats;
pub mod kube;

use std::path::PathBuf;
use std::time::Duration;

use teleport_plugin::config::{Config, Format};
use teleport_plugin_sim::teleport::{SimConfig, TeleportSim};

/// The whole plugin in-process for `sim`'s chat (its real client, default
/// options), with `extra` appended to the configuration; ready.
pub async fn start_plugin(env: &Env, sim: &chats::Sim, extra: &str) -> teleport_plugin::app::Running {
    let cfg = env.config(&format!("{}{extra}", sim.section()));
    let chats = teleport_plugin::cli::build_chats(&cfg).unwrap();
    let running = teleport_plugin::app::launch(&cfg, chats, teleport_plugin::app::Extras::default()).await.expect("launch");
    assert!(running.ready(Duration::from_secs(10)).await);
    running
}

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct Env {
    pub sim: TeleportSim,
    pub dir: tempfile::TempDir,
    pub identity_path: PathBuf,
}

impl Env {
    pub async fn new() -> Self {
        Self::with(SimConfig::default()).await
    }

    pub async fn with(cfg: SimConfig) -> Self {
        init();
        let sim = TeleportSim::start(cfg).await.expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let identity_path = dir.path().join("identity");
        let issued = sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap();
        std::fs::write(&identity_path, issued.identity_file).unwrap();
        Self { sim, dir, identity_path }
    }

    /// `[teleport]` and `[http]` sections for this simulator, plus `extra`.
    pub fn config_text(&self, extra: &str) -> String {
        format!(
            "[teleport]\naddr = \"{}\"\nidentity = \"{}\"\n\n[http]\nlisten = \"\"\n\n{extra}",
            self.sim.addr(),
            self.identity_path.display()
        )
    }

    pub fn config(&self, extra: &str) -> Config {
        Config::parse(&self.config_text(extra), Format::Toml, "test.toml").expect("valid test config")
    }
}

/// A port free on loopback now, for a callback listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `text` (from [`Env::config_text`]) with the callback listener on
/// loopback `port`, reachable at `http://127.0.0.1:port`.
pub fn with_callbacks(text: &str, port: u16) -> String {
    text.replace(
        "[http]\nlisten = \"\"\n",
        &format!("[http]\nlisten = \"\"\nlisten_addr = \"127.0.0.1:{port}\"\npublic_addr = \"http://127.0.0.1:{port}\"\n"),
    )
}

/// `text` (from [`Env::config_text`]) with the health and metrics listener
/// on a free loopback port, and that `host:port`.
pub fn with_metrics(text: &str) -> (String, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    (text.replace("[http]\nlisten = \"\"\n", &format!("[http]\nlisten = \"{addr}\"\n")), addr)
}

/// The real binary running `start --config config`, output discarded.
pub fn spawn_plugin(config: &str) -> Spawned {
    Spawned(
        std::process::Command::new(env!("CARGO_BIN_EXE_teleport-plugin"))
            .args(["start", "--config", config])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the plugin"),
    )
}

/// Review from chat: the plugin's user (`access-plugin`) may submit reviews
/// for anyone, holders of `reviewer` may review `editor` requests, and each
/// `(user, trait, value)` is a reviewer whose trait links a chat account.
pub fn review_rules(sim: &TeleportSim, reviewers: &[(&str, &str, &str)]) {
    sim.set_submit_for_users("plugin-review", &["*"]);
    sim.put_user("access-plugin", &["plugin-review"], &[]);
    sim.allow_review("reviewer", &["editor"]);
    for (user, name, value) in reviewers {
        sim.put_user(user, &["reviewer"], &[(name, &[value])]);
    }
}

/// How long a plugin must stay idle before a test concludes nothing more
/// will arrive. `Running::active` counts work queued, running or waiting for
/// a retry (a backoff or another replica's claim lease), so an unbroken quiet
/// spell means no later retry or takeover can still add a message.
pub const QUIET: Duration = Duration::from_millis(500);

/// An unbroken run of idle observations.
#[derive(Default)]
struct Quiet(Option<std::time::Instant>);

impl Quiet {
    /// Records one observation; true once idle has held for [`QUIET`].
    fn long_enough(&mut self, idle: bool) -> bool {
        if !idle {
            self.0 = None;
            return false;
        }
        self.0.get_or_insert_with(std::time::Instant::now).elapsed() >= QUIET
    }
}

/// Waits until every plugin has had no work in progress for [`QUIET`] in a
/// row; false when `timeout` passes first.
pub async fn wait_idle(plugins: &[&teleport_plugin::app::Running], timeout: Duration) -> bool {
    let mut quiet = Quiet::default();
    eventually(timeout, || quiet.long_enough(plugins.iter().all(|p| p.active() == 0))).await
}

/// [`wait_idle`] for plugins running as their own processes: reads the
/// `teleport_plugin_requests_tracked` gauges (the same count) from each
/// process's `/metrics` at `addrs` (`host:port`). A process that does not
/// answer counts as busy.
pub async fn wait_idle_metrics(addrs: &[String], timeout: Duration) -> bool {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut quiet = Quiet::default();
    while tokio::time::Instant::now() < deadline {
        let mut idle = true;
        for addr in addrs {
            idle &= match client.get(format!("http://{addr}/metrics")).send().await {
                Ok(r) => r.text().await.is_ok_and(|t| tracked(&t) == Some(0)),
                Err(_) => false,
            };
        }
        if quiet.long_enough(idle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Sum of the `requests_tracked` gauges in a Prometheus text page; `None`
/// before any pipeline has published one.
fn tracked(page: &str) -> Option<i64> {
    let values: Vec<i64> = page
        .lines()
        .filter(|l| l.starts_with("teleport_plugin_requests_tracked{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// A plugin process that is killed when dropped, so a test that fails
/// half-way leaves nothing running (an orphan would keep calling whatever
/// later binds its simulators' ports).
pub struct Spawned(pub std::process::Child);

impl Spawned {
    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
