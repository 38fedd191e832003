//! Shared set-up for end-to-end tests: a Teleport simulator, an identity file
//! for it, and a configuration pointing at both.
#![allow(dead_code)]

pub mod chats;

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
