//! Watch-stream helpers shared by the Teleport client tests over every
//! connection path (direct and through the Proxy).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use teleport_plugin::identity::{Identity, parse_identity_file};
use teleport_plugin_sim::teleport::TeleportSim;
use teleport_plugin::teleport::watch::WatchStats;
use teleport_plugin::teleport::{Feed, StreamState, TeleportClient, Watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use teleport_plugin_sim::access::AccessRequestExt;

/// A fresh identity for the plugin user, valid for an hour.
pub fn identity(sim: &TeleportSim) -> Arc<Identity> {
    let issued = sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap();
    Arc::new(parse_identity_file(issued.identity_file.as_bytes()).unwrap())
}

/// Receives feed items until `pred` has seen what it wants, or panics after 10 s.
pub async fn collect_until(rx: &mut mpsc::Receiver<Feed>, mut pred: impl FnMut(&Feed) -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(f) = rx.recv().await {
            if pred(&f) {
                return;
            }
        }
        panic!("feed closed");
    })
    .await
    .expect("expected feed items in time");
}

/// A watcher over a live client that follows identity updates, started and
/// caught up.
pub struct RotatingWatch {
    client: Arc<TeleportClient>,
    first: Arc<Identity>,
    id_tx: watch::Sender<Arc<Identity>>,
    rx: mpsc::Receiver<Feed>,
    state: watch::Receiver<StreamState>,
    stats: Arc<WatchStats>,
}

impl RotatingWatch {
    /// Starts the watcher (it runs until `stop` is cancelled) and waits for
    /// its first catch-up.
    pub async fn start(client: Arc<TeleportClient>, first: Arc<Identity>, stop: &CancellationToken) -> Self {
        let (id_tx, id_rx) = watch::channel(first.clone());
        let (tx, mut rx) = mpsc::channel(4096);
        let watcher = Watcher::new(client.clone(), tx).with_identity_updates(id_rx);
        let stats = watcher.stats();
        let state = watcher.state();
        tokio::spawn(watcher.run(stop.clone()));
        collect_until(&mut rx, |f| matches!(f, Feed::CaughtUp { .. })).await;
        RotatingWatch { client, first, id_tx, rx, state, stats }
    }

    /// Rotates the identity while `burst` requests are being created and
    /// checks the make-before-break contract: every request is delivered, the
    /// stream ends up live with the new identity, and the switch was one
    /// rotation with no reconnect. Returns the new identity.
    pub async fn rotate_mid_burst(mut self, sim: &TeleportSim, burst: usize) -> Arc<Identity> {
        let producer = {
            let sim = sim.clone();
            tokio::spawn(async move {
                let mut ids = HashSet::new();
                for i in 0..burst {
                    ids.insert(sim.request(&format!("u{i}"), &["editor"], "").id().to_string());
                    if i % 10 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                ids
            })
        };
        let second = identity(sim);
        assert_ne!(second.fingerprint, self.first.fingerprint);
        self.id_tx.send(second.clone()).unwrap();
        let expected = producer.await.unwrap();

        let mut got = HashSet::new();
        collect_until(&mut self.rx, |f| {
            if let Feed::Put(r) | Feed::Listed(r) = f {
                got.insert(r.id.clone());
            }
            got.is_superset(&expected)
        })
        .await;
        self.state
            .wait_for(|s| matches!(s, StreamState::Live { identity, .. } if *identity == second.fingerprint))
            .await
            .unwrap();
        assert_eq!(self.client.connection().identity.fingerprint, second.fingerprint);
        assert_eq!(self.stats.rotations.load(Ordering::Relaxed), 1);
        assert_eq!(self.stats.reconnects.load(Ordering::Relaxed), 0, "no gap: the old stream was never lost");
        // Keep draining so the watcher never blocks on a full feed, and keep
        // the identity sender alive so the watcher sees no closed channel.
        let (mut rx, id_tx) = (self.rx, self.id_tx);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {}
            drop(id_tx);
        });
        second
    }
}
