//! Liveness and readiness, computed from the state other components publish.
//!
//! - Live: the runtime and every pipeline loop are turning (a wedged loop
//!   stops its heartbeat). A lost Teleport connection is *not* a liveness
//!   failure: restarting would not help, the plugin reconnects by itself.
//! - Ready: identity loaded and unexpired, event stream live, chat tokens
//!   accepted, no Kubernetes permission refused. A refused identity update
//!   keeps the old identity and shows as "degraded" without failing
//!   readiness while the old one still works.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{info, warn};

pub mod access;

use crate::identity::publish::IdentityStatus;
use crate::teleport::StreamState;

/// What a chat's pipeline reports for readiness (published by the engine).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineStatus {
    /// A stream has been announced and the rules for it are loaded.
    pub ready: bool,
    /// Requests with work queued, running or waiting for a retry.
    pub active: usize,
}

/// A heartbeat a loop updates while it runs.
#[derive(Debug, Default)]
pub struct Heartbeat(AtomicU64);

impl Heartbeat {
    pub fn beat(&self) {
        self.0.store(now_secs(), Ordering::Relaxed);
    }

    /// Seconds since the last beat (`None` before the first).
    pub fn age(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now_secs().saturating_sub(t)),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Everything the probes look at.
pub struct Health {
    pub identity: watch::Receiver<IdentityStatus>,
    pub stream: watch::Receiver<StreamState>,
    pub pipelines: Vec<(&'static str, watch::Receiver<PipelineStatus>, Arc<Heartbeat>)>,
    /// Chat health checks passed at start.
    pub chats_checked: bool,
    /// Click connections (what, state), when review from chat is on.
    pub clicks: Vec<(String, watch::Receiver<crate::chat::click::LinkState>)>,
    /// Loops older than this are considered wedged.
    pub stall_after: Duration,
    /// Kubernetes permissions the API server refuses (identity Secret,
    /// AccessRequestRoute resources): not ready while any is refused.
    pub kube_access: Option<Arc<crate::health::access::KubeAccess>>,
}

/// A probe answer: overall verdict and one line per check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub ok: bool,
    pub lines: Vec<String>,
}

impl Report {
    pub fn body(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            let _ = writeln!(s, "{l}");
        }
        let _ = writeln!(s, "{}", if self.ok { "ok" } else { "not ok" });
        s
    }
}

impl Health {
    pub fn live(&self) -> Report {
        let mut ok = true;
        let mut lines = Vec::new();
        for (name, _, beat) in &self.pipelines {
            match beat.age() {
                Some(age) if age <= self.stall_after.as_secs() => lines.push(format!("[+] {name} loop: alive")),
                Some(age) => {
                    ok = false;
                    lines.push(format!("[-] {name} loop: no progress for {age}s"));
                }
                None => lines.push(format!("[+] {name} loop: starting")),
            }
        }
        Report { ok, lines }
    }

    pub fn ready(&self) -> Report {
        let mut ok = true;
        let mut lines = Vec::new();
        let id = self.identity.borrow().clone();
        match id.not_after {
            Some(t) if t > SystemTime::now() => {
                let left = t.duration_since(SystemTime::now()).unwrap_or_default();
                let detail = format!("identity {} valid for {}", id.fingerprint, humantime::format_duration(Duration::from_secs(left.as_secs())));
                match &id.last_error {
                    None => lines.push(format!("[+] {detail}")),
                    Some(e) => lines.push(format!("[+] {detail} (degraded: {e})")),
                }
            }
            Some(_) => {
                ok = false;
                lines.push(format!(
                    "[-] identity {} has expired{}",
                    id.fingerprint,
                    id.last_error.as_ref().map(|e| format!("; {e}")).unwrap_or_default()
                ));
            }
            None => {
                ok = false;
                lines.push("[-] identity not loaded".into());
            }
        }
        match &*self.stream.borrow() {
            StreamState::Live { generation, .. } => lines.push(format!("[+] Teleport event stream live (connection {generation})")),
            StreamState::Connecting { attempt, last_error } => {
                ok = false;
                lines.push(format!(
                    "[-] Teleport event stream down (attempt {attempt}){}",
                    last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                ));
            }
        }
        if self.chats_checked {
            lines.push("[+] chat tokens accepted".into());
        } else {
            ok = false;
            lines.push("[-] chat health check not passed".into());
        }
        for (what, state) in &self.clicks {
            use crate::chat::click::LinkState;
            match &*state.borrow() {
                LinkState::Connected => lines.push(format!("[+] {what}: connected")),
                // Reconnecting is routine (Slack recycles sockets): not a failure.
                LinkState::Connecting => lines.push(format!("[+] {what}: connecting")),
                LinkState::Unavailable(why) => {
                    ok = false;
                    lines.push(format!("[-] {what}: review from chat unavailable (notifications go on): {why}"));
                }
            }
        }
        for problem in self.kube_access.iter().flat_map(|a| a.problems()) {
            ok = false;
            lines.push(format!("[-] Kubernetes API: {problem}"));
        }
        for (name, status, _) in &self.pipelines {
            let s = status.borrow();
            if s.ready {
                lines.push(format!("[+] {name}: ready ({} requests in progress)", s.active));
            } else {
                ok = false;
                lines.push(format!("[-] {name}: waiting for the first event stream"));
            }
        }
        Report { ok, lines }
    }
}

/// What the start is waiting for (the identity Secret, Auth, a chat API),
/// published while dependencies come up. A new wait is logged once; retries
/// for the same dependency are not, whatever their error (`/readyz` shows
/// the latest).
#[derive(Debug)]
pub struct Startup {
    tx: watch::Sender<Option<(String, String)>>,
}

impl Default for Startup {
    fn default() -> Self {
        Self { tx: watch::channel(None).0 }
    }
}

impl Startup {
    /// Reports that the start waits for `what` because of `why`.
    pub fn waiting(&self, what: &str, why: &str) {
        let mut new_wait = false;
        self.tx.send_modify(|cur| {
            new_wait = cur.as_ref().is_none_or(|(w, _)| w != what);
            *cur = Some((what.to_string(), why.to_string()));
        });
        if new_wait {
            warn!("waiting for {what}: {why}; retrying");
        }
    }

    /// Reports that `what` is there; logs only after a wait for it.
    pub fn arrived(&self, what: &str) {
        if self.tx.send_if_modified(|cur| cur.take().is_some()) {
            info!("{what} is available");
        }
    }

    /// "waiting for WHAT: WHY", while waiting.
    pub fn current(&self) -> Option<String> {
        self.tx.borrow().as_ref().map(|(what, why)| format!("waiting for {what}: {why}"))
    }
}

/// What /healthz, /readyz and /metrics answer from: the start's progress
/// until the plugin runs, then the running plugin's [`Health`].
#[derive(Default)]
pub struct Probes {
    pub startup: Arc<Startup>,
    running: OnceLock<(Arc<Health>, Arc<Registry>)>,
}

impl Probes {
    /// The plugin is running: answer from its state from now on.
    pub fn set_running(&self, health: Arc<Health>, registry: Arc<Registry>) {
        let _ = self.running.set((health, registry));
    }

    pub fn live(&self) -> Report {
        match self.running.get() {
            Some((h, _)) => h.live(),
            // Waiting for a dependency is not a liveness failure: a restart
            // would only wait again.
            None => Report { ok: true, lines: vec!["[+] starting".into()] },
        }
    }

    pub fn ready(&self) -> Report {
        match self.running.get() {
            Some((h, _)) => h.ready(),
            None => {
                let why = self.startup.current().unwrap_or_else(|| "starting".into());
                Report { ok: false, lines: vec![format!("[-] {why}")] }
            }
        }
    }

    /// The metrics registry once the plugin runs.
    pub fn registry(&self) -> Option<Arc<Registry>> {
        self.running.get().map(|(_, r)| r.clone())
    }
}
