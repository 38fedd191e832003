//! The plugin started as its pod runs it: Kubernetes set-up (identity
//! Secret, route watcher) through a client of the Kubernetes simulator, a
//! console chat whose output the test reads.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use teleport_plugin::app::{Running, launch};
use teleport_plugin::chat::Chat;
use teleport_plugin::chat::console::ConsoleChat;
use teleport_plugin::config::Config;
use tokio_util::sync::CancellationToken;

pub struct KubePlugin {
    pub running: Running,
    pub out: Arc<Mutex<Vec<u8>>>,
    pub stop: CancellationToken,
}

impl KubePlugin {
    /// Starts it with `client` (not waiting for readiness: a test may want
    /// to see it wait).
    pub async fn start(cfg: &Config, client: kube::Client) -> Self {
        let stop = CancellationToken::new();
        let setup = teleport_plugin::k8s::setup_with(cfg, &stop, client).await.expect("kubernetes setup");
        let (console, out) = ConsoleChat::buffered();
        let routes = setup.routes;
        let running = launch(cfg, vec![Arc::new(console) as Arc<dyn Chat>], setup.extras).await.expect("launch");
        teleport_plugin::k8s::start_routes(routes, running.metrics.clone(), stop.clone());
        KubePlugin { running, out, stop }
    }

    /// What the console chat printed so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).to_string()
    }

    /// Whether `/readyz` passes, and its body.
    pub fn readiness(&self) -> (bool, String) {
        let r = self.running.health.ready();
        (r.ok, r.body())
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.running.stop(Duration::from_secs(5)).await;
    }
}
